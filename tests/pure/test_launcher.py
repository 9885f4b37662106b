"""The launcher install.sh installs as /opt/updater/bin/updater (and bin/python): which Python it
picks, how isolated it runs it; and install.sh's rule that every installed wheel is pure.

The launcher runs here from a prefix laid out as install.sh lays /opt/updater (bin/, lib/,
interpreter), with a stand-in `updater` package in lib/ that reports what it was started with.
A boot with no Python at all (and the journal's priority) is tests/system/test_os_update.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testbed import PROJECT

LAUNCHER = PROJECT / "launcher/updater"
INSTALL = PROJECT / "install.sh"

REPORT = """
import json, sys
def entry():
    print(json.dumps({"argv": sys.argv, "path": sys.path, "isolated": sys.flags.isolated,
                      "no_site": sys.flags.no_site, "executable": sys.executable,
                      "pycache_prefix": sys.pycache_prefix}))
"""


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """tmp/opt/updater as install.sh lays it out, on this test's Python."""
    root = tmp_path / "opt/updater"
    (root / "bin").mkdir(parents=True)
    shutil.copy(LAUNCHER, root / "bin/updater")
    (root / "bin/python").symlink_to("updater")
    package = root / "lib/updater"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli.py").write_text(REPORT)
    (package / "report.py").write_text(REPORT + "\nentry()\n")
    (root / "interpreter").write_text(sys.executable + "\n")
    return root


def launch(
    path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/nonexistent"}
    return subprocess.run(
        [str(path), *args], capture_output=True, text=True, timeout=30, env={**base, **(env or {})}
    )


def report(done: subprocess.CompletedProcess[str]) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def fake_python(path: Path, version: tuple[int, int]) -> Path:
    """An executable that answers the launcher's probe as a Python of `version` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = "1" if version < (3, 11) else "0"
    path.write_text(f'#!/bin/sh\necho "fake {version}" >&2\nexit {old}\n')
    path.chmod(0o755)
    return path


def test_runs_the_recorded_python_isolated_with_lib_alone_on_its_path(prefix, tmp_path):
    env = {"PYTHONPATH": str(tmp_path / "evil"), "PYTHONSAFEPATH": "", "PYTHONINSPECT": "1"}
    got = report(launch(prefix / "bin/updater", "run", "--unit", "a b", env=env))
    assert got["argv"][1:] == ["run", "--unit", "a b"]
    assert got["isolated"] == 1 and got["no_site"] == 1
    assert got["path"][0] == str(prefix / "lib")
    assert not [p for p in got["path"] if "evil" in p or "site-packages" in p], got["path"]
    assert os.path.realpath(got["executable"]) == os.path.realpath(sys.executable)
    assert got["pycache_prefix"] == "/var/cache/updater/pycache"


def test_started_through_a_symlink_elsewhere_it_finds_its_prefix(prefix, tmp_path):
    (tmp_path / "opt/bin").mkdir(parents=True)
    link = tmp_path / "opt/bin/updater"
    link.symlink_to(prefix / "bin/updater")
    assert report(launch(link, "check"))["path"][0] == str(prefix / "lib")


def test_a_recorded_python_gone_gives_way_to_the_standalone_then_path(prefix, tmp_path):
    (prefix / "interpreter").write_text(str(tmp_path / "gone/python3") + "\n")
    standalone = prefix.parent / "updater-python/bin/python3"
    standalone.parent.mkdir(parents=True)
    standalone.symlink_to(sys.executable)
    assert report(launch(prefix / "bin/updater"))["executable"] == str(standalone)

    # A standalone too old: python3 on PATH (the OS's, e.g. Flatcar's extension) is next.
    standalone.unlink()
    fake_python(standalone, (3, 10))
    on_path = tmp_path / "usr/bin/python3"
    on_path.parent.mkdir(parents=True)
    on_path.symlink_to(sys.executable)
    env = {"PATH": f"/nonexistent:{on_path.parent}"}
    assert report(launch(prefix / "bin/updater", env=env))["executable"] == str(on_path)

    # Never a python3 relative to the working directory (an empty or relative PATH entry).
    fake_python(tmp_path / "python3", (3, 13))
    fake_python(tmp_path / "rel/python3", (3, 13))
    done = subprocess.run(
        [str(prefix / "bin/updater")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={"PATH": f":rel:{on_path.parent}"},
    )
    assert report(done)["executable"] == str(on_path)


def test_the_recorded_python_starts_once_without_a_trial_start(prefix, tmp_path):
    """install.sh checked it: every minute's run starts one Python, not a probe and then it."""
    starts = tmp_path / "starts"
    recorded = tmp_path / "recorded/python3"
    recorded.parent.mkdir()
    recorded.write_text(f'#!/bin/sh\necho started >>{starts}\nexec {sys.executable} "$@"\n')
    recorded.chmod(0o755)
    (prefix / "interpreter").write_text(f"{recorded}\n")
    assert report(launch(prefix / "bin/updater", "run"))["argv"][1:] == ["run"]
    assert len(starts.read_text().splitlines()) == 1, starts.read_text()


def test_a_recorded_python_now_too_old_stops_the_run_saying_so(prefix, tmp_path):
    """Taken without a trial start, a recorded Python older than 3.11 is caught by the program's
    first line: one message naming it and the fix, exit 1, nothing run."""
    old = tmp_path / "old/python3"
    old.parent.mkdir()
    as_310 = 'import sys; sys.version_info = (3, 10, 0, "final", 0); exec(sys.argv.pop(1))'
    old.write_text(
        "#!/bin/sh\n"
        'while [ "$1" != -c ]; do shift; done; shift\n'  # the launcher's -I -S -X ... flags
        f"exec {sys.executable} -c '{as_310}' \"$@\"\n"
    )
    old.chmod(0o755)
    (prefix / "interpreter").write_text(f"{old}\n")
    done = launch(prefix / "bin/updater", "run")
    assert done.returncode == 1 and not done.stdout
    assert "is Python 3.10; the updater needs 3.11 or later: run install.sh again" in done.stderr


def test_bin_python_runs_a_module_of_lib(prefix):
    got = report(launch(prefix / "bin/python", "-m", "updater.report", "--flag"))
    assert got["argv"][0].endswith("lib/updater/report.py") and got["argv"][1:] == ["--flag"]
    assert got["isolated"] == 1 and got["pycache_prefix"] is None

    done = launch(prefix / "bin/python", "-c", "print(1)")
    assert done.returncode == 2 and "-m MODULE" in done.stderr


def test_launcher_is_posix_sh():
    subprocess.run(["sh", "-n", str(LAUNCHER)], check=True)
    if shutil.which("dash"):
        subprocess.run(["dash", "-n", str(LAUNCHER)], check=True)


# --- install.sh: only pure wheels ------------------------------------------------------------

FAKE_PIP = """#!/bin/sh
# pip download ... --dest DIR NAME==VERSION: a pure wheel of what was asked, if `pure` names it.
while [ $# -gt 1 ]; do
    [ "$1" = --dest ] && dest=$2
    shift
done
grep -qx "$1" "$(dirname "$0")/pure" || exit 1
mkdir -p "$dest"
echo "$1" >"$dest/$(echo "$1" | sed 's/==/-/')-py3-none-any.whl"
"""


def pure_wheels(tmp_path: Path, wheels: list[str], pure: list[str]) -> subprocess.CompletedProcess:
    """install.sh's pure_wheels on a dir of (empty) wheels, with a fake pip that has `pure`."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name in wheels:
        (folder / name).write_text("")
    pip = tmp_path / "pip"
    pip.write_text(FAKE_PIP)
    pip.chmod(0o755)
    (tmp_path / "pure").write_text("".join(f"{p}\n" for p in pure))
    script = 'a=("$@"); set --; source "${a[0]}"; pure_wheels "${a[1]}" 3.13 "${a[2]}"'
    return subprocess.run(
        ["bash", "-c", script, "test", str(INSTALL), str(folder), str(pip)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_compiled_wheel_is_replaced_by_its_pure_wheel_of_the_same_version(tmp_path):
    done = pure_wheels(
        tmp_path,
        [
            "charset_normalizer-3.4.4-cp311-cp311-manylinux_2_17_x86_64.whl",
            "requests-2.32.5-py3-none-any.whl",
            "six-1.17.0-py2.py3-none-any.whl",
            "oneversion-1.0-cp311-none-any.whl",
        ],
        pure=["charset_normalizer==3.4.4", "oneversion==1.0"],
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "wheels").iterdir()) == [
        "charset_normalizer-3.4.4-py3-none-any.whl",
        "oneversion-1.0-py3-none-any.whl",
        "requests-2.32.5-py3-none-any.whl",
        "six-1.17.0-py2.py3-none-any.whl",
    ]


def test_a_dependency_with_no_pure_wheel_is_refused_by_name(tmp_path):
    done = pure_wheels(tmp_path, ["numpy-2.3.0-cp311-cp311-manylinux_2_17_x86_64.whl"], pure=[])
    assert done.returncode == 1
    assert "numpy 2.3.0 has no pure-Python wheel (py3-none-any)" in done.stderr


def test_pyyaml_which_apprise_imports_only_for_yaml_files_is_left_out(tmp_path):
    wheels = [
        "pyyaml-6.0.3-cp311-cp311-manylinux_2_17_x86_64.whl",
        "apprise-2.3.0-py3-none-any.whl",
    ]
    done = pure_wheels(tmp_path, wheels, pure=[])
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "wheels").iterdir()] == ["apprise-2.3.0-py3-none-any.whl"]
