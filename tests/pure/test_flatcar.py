"""Flatcar: examples/flatcar.bu has the Butane schema's shape and embeds the units verbatim, and
install.sh's --python-standalone verifies a tarball before it unpacks anything.

install.sh's preflight needs root, systemd and Docker, so `--python-standalone` is not run end to
end here: install.sh, when sourced, only defines its functions, and these tests call the ones that
fetch, verify and unpack the tarball (install_standalone, verify_standalone) with STANDALONE
pointed into a temporary directory. The happy path sets the pinned sha256 variables to the
fake tarball's sum after sourcing; nothing in install.sh reads an override from the environment.
"""

from __future__ import annotations

import hashlib
import io
import re
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

from testbed import PROJECT
from updater.config import load, unit_file

BUTANE = PROJECT / "examples/flatcar.bu"
INSTALL = PROJECT / "install.sh"
APP_IMAGE = "ghcr.io/acme/app:prod"

# The Butane flatcar 1.0.0 spec's keys (those this file may use).
TOP_KEYS = {"variant", "version", "ignition", "storage", "systemd", "passwd", "kernel_arguments"}
STORAGE_KEYS = {"files", "directories", "links", "disks", "filesystems", "luks", "raid", "trees"}
FILE_KEYS = {"path", "overwrite", "contents", "append", "mode", "user", "group"}
CONTENTS_KEYS = {"inline", "source", "local", "compression", "verification", "http_headers"}
UNIT_KEYS = {"name", "enabled", "mask", "contents", "dropins"}


@pytest.fixture(scope="module")
def butane() -> dict:
    return yaml.safe_load(BUTANE.read_text())


def files(butane: dict) -> dict[str, dict]:
    return {f["path"]: f for f in butane["storage"]["files"]}


def units(butane: dict) -> dict[str, dict]:
    return {u["name"]: u for u in butane["systemd"]["units"]}


def pinned(name: str) -> str:
    found = re.search(rf"^{name}=(\S+)$", INSTALL.read_text(), re.M)
    assert found, f"install.sh pins no {name}"
    return found[1]


# --- examples/flatcar.bu ---------------------------------------------------------------------


def test_butane_has_the_schema_shape(butane):
    assert set(butane) <= TOP_KEYS
    assert butane["variant"] == "flatcar"
    assert isinstance(butane["version"], str) and re.fullmatch(r"\d+\.\d+\.\d+", butane["version"])
    assert set(butane["storage"]) <= STORAGE_KEYS

    for entry in butane["storage"]["files"]:
        assert set(entry) <= FILE_KEYS, entry
        assert entry["path"].startswith("/"), entry
        contents = entry["contents"]
        assert set(contents) <= CONTENTS_KEYS, entry
        assert len({"inline", "source", "local"} & set(contents)) == 1, entry
        if "inline" in contents:
            assert isinstance(contents["inline"], str)
        if "source" in contents:
            digest = contents["verification"]["hash"]
            assert re.fullmatch(r"sha256-[0-9a-f]{64}|sha512-[0-9a-f]{128}", digest), entry
        if "mode" in entry:
            # 0644 in YAML is an int (420) for PyYAML and for Butane alike; "0644" would be a string.
            assert isinstance(entry["mode"], int) and 0 <= entry["mode"] <= 0o7777, entry
        if entry.get("overwrite"):
            assert "contents" in entry

    assert set(butane["systemd"]) == {"units"}
    for unit in butane["systemd"]["units"]:
        assert set(unit) <= UNIT_KEYS, unit
        assert re.fullmatch(r"[\w@.-]+\.(service|timer|socket|path|mount|target)", unit["name"])
        assert {"contents", "enabled", "dropins", "mask"} & set(unit), unit
        if "contents" in unit:
            assert isinstance(unit["contents"], str) and unit["contents"].endswith("\n")
        if "enabled" in unit:
            assert isinstance(unit["enabled"], bool)
    names = [u["name"] for u in butane["systemd"]["units"]]
    assert len(names) == len(set(names))


def test_updater_units_are_embedded_verbatim(butane):
    embedded = units(butane)
    for name in ("updater.service", "updater.timer"):
        assert embedded[name]["contents"] == (PROJECT / "units" / name).read_text(), (
            f"examples/flatcar.bu's {name} differs from units/{name}: copy it again"
        )
        # install.sh enables the timer once the program exists; Ignition must not start it before.
        assert "enabled" not in embedded[name]


def test_app_unit_is_the_example_with_name_and_image(butane):
    example = (PROJECT / "units/example-app.service").read_text()
    app = units(butane)["app.service"]
    assert app["contents"] == example.replace("NAME", "app").replace("IMAGE", APP_IMAGE)
    assert app["enabled"] is True
    exec_start = re.search(r"^ExecStart=(.*)$", app["contents"], re.M)[1].split()
    assert "--pull" not in exec_start and "-d" not in exec_start and "--detach" not in exec_start
    assert exec_start[-1] == APP_IMAGE


def test_app_config_is_what_updater_add_writes_and_loads(butane, tmp_path):
    main = Path("/etc/updater/config.toml")
    target = unit_file(main, "app.service")
    entry = files(butane)[str(target)]
    assert entry["mode"] == 0o644
    text = entry["contents"]["inline"]
    assert tomllib.loads(text) == {"units": {"app.service": {"image": APP_IMAGE}}}

    # Read the way a run reads it, next to the commented example install.sh writes.
    config = tmp_path / "config.toml"
    config.write_text((PROJECT / "docs/config.example.toml").read_text())
    (tmp_path / "config.d").mkdir()
    (tmp_path / "config.d" / target.name).write_text(text)
    (unit,) = load(config).units
    assert (unit.name, unit.container) == ("app.service", "app")
    assert (unit.image.repository, unit.image.tag) == ("ghcr.io/acme/app", "prod")


def test_python_comes_from_the_official_sysext(butane):
    conf = files(butane)["/etc/flatcar/enabled-sysext.conf"]
    assert "python" in conf["contents"]["inline"].split()
    assert conf["mode"] == 0o644


def test_install_unit_fetches_a_tarball_and_runs_install_sh_once(butane):
    install = units(butane)["updater-install.service"]
    assert install["enabled"] is True
    text = install["contents"]
    lines = text.splitlines()
    assert "ConditionPathExists=!/opt/updater/bin/updater" in lines
    assert "Type=oneshot" in lines
    after = next(line for line in lines if line.startswith("After="))
    assert "network-online.target" in after.split("=", 1)[1].split()
    assert "Wants=network-online.target" in lines
    url = re.search(r"^Environment=UPDATER_TARBALL=(\S+)$", text, re.M)[1]
    assert url.startswith("https://") and url.endswith(".tar.gz")
    assert "git " not in text  # no git on Flatcar
    assert re.search(r"^ExecStartPre=/usr/bin/curl .*\$\{UPDATER_TARBALL\}$", text, re.M)
    assert re.search(r"^ExecStartPre=/usr/bin/tar .*--directory /opt/updater-src$", text, re.M)
    assert "ExecStart=/opt/updater-src/install.sh" in lines
    assert re.search(r"^WantedBy=multi-user.target$", text, re.M)


def test_documented_standalone_is_the_pinned_one():
    """The commented alternative in the Butane file and docs/flatcar.md name install.sh's pin."""
    pin = f"cpython-{pinned('PBS_PYTHON')}+{pinned('PBS_RELEASE')}-"
    for doc in (BUTANE, PROJECT / "docs/flatcar.md"):
        named = set(re.findall(r"cpython-[0-9.]+\+[0-9]+-", doc.read_text()))
        assert named == {pin}, f"{doc.name} names {named}, install.sh pins {pin}"


# --- install.sh --python-standalone ----------------------------------------------------------


def fake_tarball(path: Path, members: dict[str, str]) -> str:
    """A gzipped tar like python-build-standalone's install_only (python/bin/python3, ...)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if "/bin/" in name else 0o644
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return hashlib.sha256(path.read_bytes()).hexdigest()


PYTHON = {"python/bin/python3": "#!/bin/sh\necho fake\n", "python/lib/os.py": "# fake\n"}


def standalone(target: Path, *args: str, trust: str | None = None) -> subprocess.CompletedProcess:
    """install_standalone ARGS with install.sh sourced; `trust` replaces both pinned sums."""
    override = f"PBS_SHA256_x86_64={trust}; PBS_SHA256_aarch64={trust}; " if trust else ""
    # Sourced with no arguments, install.sh parses none; then the function gets ours.
    script = (
        f'script=$1 target=$2; shift 2; args=("$@"); set --; source "$script"; '
        f'STANDALONE=$target; {override}install_standalone "${{args[@]}}"'
    )
    return subprocess.run(
        ["bash", "-c", script, "test", str(INSTALL), str(target), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_install_sh_parses():
    subprocess.run(["bash", "-n", str(INSTALL)], check=True)


def test_pinned_sums_are_sha256():
    assert re.fullmatch(r"3\.12\.\d+", pinned("PBS_PYTHON"))
    assert re.fullmatch(r"\d{8}", pinned("PBS_RELEASE"))
    for arch in ("x86_64", "aarch64"):
        assert re.fullmatch(r"[0-9a-f]{64}", pinned(f"PBS_SHA256_{arch}")), arch


def test_mismatch_is_refused_before_unpacking(tmp_path):
    tarball = tmp_path / "cpython.tar.gz"
    actual = fake_tarball(tarball, PYTHON)
    target = tmp_path / "opt/updater-python"

    done = standalone(target, str(tarball))

    assert done.returncode == 1
    assert f"refusing {tarball}: its sha256 is {actual}" in done.stderr
    arch = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[
        subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    ]
    assert f"expected {pinned(f'PBS_SHA256_{arch}')}" in done.stderr
    assert "nothing was unpacked" in done.stderr
    assert not target.exists()
    assert not target.parent.exists() or list(target.parent.iterdir()) == []


def test_mismatch_leaves_an_installed_standalone_alone(tmp_path):
    good = tmp_path / "good.tar.gz"
    sha = fake_tarball(good, PYTHON)
    target = tmp_path / "opt/updater-python"
    assert standalone(target, str(good), trust=sha).returncode == 0

    bad = tmp_path / "bad.tar.gz"
    fake_tarball(bad, {"python/bin/python3": "#!/bin/sh\necho evil\n"})
    done = standalone(target, str(bad), trust=sha)

    assert done.returncode == 1 and "refusing" in done.stderr
    assert (target / "bin/python3").read_text() == PYTHON["python/bin/python3"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["updater-python"]


def test_verified_tarball_is_unpacked_kept_and_replaced(tmp_path):
    tarball = tmp_path / "cpython.tar.gz"
    sha = fake_tarball(tarball, PYTHON)
    target = tmp_path / "opt/updater-python"

    done = standalone(target, str(tarball), trust=sha)
    assert done.returncode == 0, done.stderr
    assert f"unpacked python-build-standalone to {target}" in done.stdout
    python3 = target / "bin/python3"
    assert python3.stat().st_mode & 0o111
    assert subprocess.run([python3], capture_output=True, text=True).stdout == "fake\n"
    assert (target / "lib/os.py").exists()
    assert (target / ".sha256").read_text().strip() == sha

    # An upgrade (install.sh run again) with the same tarball keeps it as it is.
    again = standalone(target, str(tarball), trust=sha)
    assert again.returncode == 0 and f"kept {target}" in again.stdout

    # Another verified tarball replaces it whole, with nothing left beside it.
    newer = tmp_path / "newer.tar.gz"
    sha2 = fake_tarball(newer, {"python/bin/python3": "#!/bin/sh\necho newer\n"})
    replaced = standalone(target, str(newer), trust=sha2)
    assert replaced.returncode == 0, replaced.stderr
    assert subprocess.run([python3], capture_output=True, text=True).stdout == "newer\n"
    assert not (target / "lib/os.py").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["updater-python"]


def test_tarball_without_python_is_refused(tmp_path):
    tarball = tmp_path / "other.tar.gz"
    sha = fake_tarball(tarball, {"something/else": "x\n"})
    target = tmp_path / "opt/updater-python"

    done = standalone(target, str(tarball), trust=sha)

    assert done.returncode == 1
    assert "not an install_only tarball" in done.stderr
    assert list(target.parent.iterdir()) == []


@pytest.mark.parametrize(
    "source, message",
    [
        ("http://example.com/python.tar.gz", "takes a file or an https URL"),
        ("/nonexistent/python.tar.gz", "no such file"),
    ],
)
def test_bad_sources_are_refused(tmp_path, source, message):
    done = standalone(tmp_path / "updater-python", source)
    assert done.returncode == 1 and message in done.stderr
    assert not (tmp_path / "updater-python").exists()


def test_standalone_and_python_exclude_each_other():
    done = subprocess.run(
        ["bash", str(INSTALL), "--python", "/usr/bin/python3", "--python-standalone", "x.tar.gz"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "exclude each other" in done.stderr


def test_help_shows_the_standalone_option():
    done = subprocess.run(["bash", str(INSTALL), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "--python-standalone FILE|URL" in done.stdout
    assert "--uninstall" in done.stdout


def test_example_docker_config_key_loads_once_uncommented(tmp_path):
    docker = tmp_path / "home/core/.docker/config.json"
    docker.parent.mkdir(parents=True)
    docker.write_text("{}")
    example = (PROJECT / "docs/config.example.toml").read_text()
    commented = '# docker_config = "/home/core/.docker/config.json"\n'
    assert commented in example
    config = tmp_path / "config.toml"
    config.write_text(example.replace(commented, f'docker_config = "{docker}"\n'))
    assert load(config).docker_config == docker
