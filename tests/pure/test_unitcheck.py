"""Unit warnings: what in a unit would defeat the updater, read from `systemctl show` text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from updater.config import Policy, Unit
from updater.decisions import unitcheck
from updater.decisions.unitcheck import run_options, warnings
from updater.errors import SystemdError
from updater.models.reference import parse
from updater.systems.systemd import Definition, parse_definitions

AFTER = "After=basic.target docker.socket docker.service sysinit.target"


def show(exec_start: str, *, pre: Sequence[str] = (), after: str = AFTER, env: str = "") -> str:
    """A `systemctl show` block as systemd 252 prints it (argv joined with spaces)."""

    def command(argv: str) -> str:
        path = argv.split()[0]
        return (
            f"{{ path={path} ; argv[]={argv} ; ignore_errors=no ; start_time=[n/a] ; "
            "stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }"
        )

    lines = ["LoadState=loaded"]
    lines += [f"ExecStartPre={command(p)}" for p in pre]
    lines.append(f"ExecStart={command(exec_start)}" if exec_start else "ExecStart=")
    lines += [after, f"Environment={env}"]
    return "\n".join(lines) + "\n"


def found(text: str, container: str = "app") -> tuple[str, ...]:
    [definition] = parse_definitions(["app.service"], text)
    return warnings(definition, container)


def kinds(text: str, container: str = "app") -> list[str]:
    """A short name per warning, for tables of cases."""
    names = {
        "--pull always": "pull",
        "ExecStartPre runs": "pre-pull",
        "docker run -d": "detach",
        "no --name": "no-name",
        "is not the configured container": "other-name",
        "not ordered after": "order",
        "has not loaded": "not-loaded",
    }
    out = []
    for warning in found(text, container):
        out += [name for key, name in names.items() if key in warning]
    return out


CANONICAL = "/usr/bin/docker run --rm --init --name app ghcr.io/acme/app:prod"


def test_flatcars_canonical_unit_has_no_warnings():
    assert found(show(CANONICAL, pre=["/usr/bin/docker rm --force app"])) == ()


@pytest.mark.parametrize(
    ("exec_start", "expected"),
    [
        ("/usr/bin/docker run --pull always --name app img", ["pull"]),
        ("/usr/bin/docker run --pull=always --name app img", ["pull"]),
        ("/usr/bin/docker run --pull missing --name app img", []),
        ("/usr/bin/docker run --pull=never --name app img", []),
        ("/usr/bin/docker run -d --name app img", ["detach"]),
        ("/usr/bin/docker run --detach --name app img", ["detach"]),
        ("/usr/bin/docker run --detach=true --name app img", ["detach"]),
        ("/usr/bin/docker run --detach=false --name app img", []),
        ("/usr/bin/docker run -dit --name app img", ["detach"]),
        ("/usr/bin/docker run -it --name app img", []),
        ("/usr/bin/docker run -dp 8080:80 --name app img", ["detach"]),
        ("/usr/bin/docker run -p 8080:80 --name app img", []),
        ("/usr/bin/docker run --rm img", ["no-name"]),
        ("/usr/bin/docker run --name web img", ["other-name"]),
        ("/usr/bin/docker run --name=app img", []),
        ("/usr/bin/docker container run --name app img", []),
        ("/usr/bin/docker container run -d --pull always img", ["pull", "detach", "no-name"]),
        ("/usr/bin/docker -H unix:///run/docker.sock run -d --name app img", ["detach"]),
        ("/usr/bin/docker --debug --host=unix:///x run --name app img", []),
        # After the image everything is the container's own command line.
        ("/usr/bin/docker run --name app img serve -d --pull always --name x", []),
        ("/usr/bin/docker run --name app -- img -d", []),
        # A value that looks like an option is still a value.
        ("/usr/bin/docker run -e -d --name app img", []),
        ("/usr/bin/docker run --label --pull=always --name app img", []),
        ("/usr/bin/docker run -eX=1 --name app img", []),
        # Through a shell or env, and through another path to the client.
        ("/bin/sh -c exec docker run -d --name app img", ["detach"]),
        ("/usr/bin/env docker run --pull always --name app img", ["pull"]),
        ("/opt/bin/docker run --name app img", []),
        # Not a docker run: nothing to say about its options.
        ("/usr/bin/docker start -a app", []),
        ("/usr/local/bin/start-app", []),
        ("", []),
    ],
)
def test_exec_start_shapes(exec_start, expected):
    assert kinds(show(exec_start)) == expected


@pytest.mark.parametrize(
    ("pre", "expected"),
    [
        (["/usr/bin/docker pull ghcr.io/acme/app:prod"], ["pre-pull"]),
        (["/usr/bin/docker image pull ghcr.io/acme/app:prod"], ["pre-pull"]),
        (["/usr/bin/docker -H unix:///run/docker.sock pull img"], ["pre-pull"]),
        (["/usr/bin/docker rm --force app", "/usr/bin/docker pull img"], ["pre-pull"]),
        (["/usr/bin/docker kill app", "/usr/bin/docker rm app"], []),
        (["/usr/bin/mkdir -p /var/lib/app"], []),
    ],
)
def test_exec_start_pre_that_pulls(pre, expected):
    assert kinds(show(CANONICAL, pre=pre)) == expected


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        ("After=basic.target docker.service", []),
        ("After=docker.socket", []),
        ("After=basic.target network-online.target sysinit.target", ["order"]),
        ("After=", ["order"]),
    ],
)
def test_ordering_after_the_engine(after, expected):
    assert kinds(show(CANONICAL, after=after)) == expected


def test_flatcars_own_example_gets_each_warning_with_its_fix():
    # Flatcar's getting-started unit: --pull always, no ordering after Docker, another name.
    text = show(
        "/usr/bin/docker run --rm --pull always --name busybox1 busybox /bin/sh -c true",
        pre=["/usr/bin/docker kill busybox1", "/usr/bin/docker rm busybox1"],
        after="After=basic.target",
    )
    pull, name, order = found(text, container="app")
    assert "--pull always" in pull and "fix: remove --pull always" in pull
    assert "--name busybox1" in name and 'fix: --name app, or container = "busybox1"' in name
    assert "fix: add After=docker.socket docker.service to [Unit]" in order
    assert all(w.count("; fix: ") == 1 for w in (pull, name, order))


def test_no_name_fix_names_the_configured_container():
    (warning,) = found(show("/usr/bin/docker run img"), container="web")
    assert warning.endswith("fix: add --name web")


def test_name_from_the_units_environment():
    text = show("/usr/bin/docker run --name ${NAME} img", env='NAME=app "B=c d"')
    assert found(text) == ()
    assert kinds(show("/usr/bin/docker run --name $NAME img", env="NAME=web")) == ["other-name"]
    # A variable systemd gets from elsewhere (EnvironmentFile=): nothing can be said.
    assert found(show("/usr/bin/docker run --name ${NAME} img")) == ()


@pytest.mark.parametrize(
    ("state", "fix"),
    [
        ("not-found", "install it in /etc/systemd/system, then systemctl daemon-reload"),
        ("masked", "systemctl unmask app.service"),
        ("bad-setting", "see systemctl status app.service"),
    ],
)
def test_a_unit_systemd_has_not_loaded(state, fix):
    (warning,) = found(f"LoadState={state}\n")
    assert f"({state})" in warning and warning.endswith(f"fix: {fix}")


def test_several_units_from_one_show():
    text = show(CANONICAL) + "\n" + "LoadState=not-found\n" + "\n" + show("/usr/bin/docker run x")
    a, b, c = parse_definitions(["a.service", "b.service", "c.service"], text)
    assert (a.name, a.load_state, b.load_state, c.name) == (
        "a.service",
        "loaded",
        "not-found",
        "c.service",
    )
    assert a.exec_start == (tuple(CANONICAL.split()),)
    with pytest.raises(SystemdError, match="gave 3 answers"):
        parse_definitions(["a.service", "b.service"], text)


def test_several_commands_and_quoted_arguments():
    # Newer systemd may quote argv; an unbalanced quote inside one argument falls back to words.
    text = show('/usr/bin/docker run -e "A=b c" --name app img', env="X=1")
    [definition] = parse_definitions(["app.service"], text)
    assert definition.exec_start == (
        ("/usr/bin/docker", "run", "-e", "A=b c", "--name", "app", "img"),
    )
    assert definition.environment == {"X": "1"}
    [odd] = parse_definitions(["app.service"], show("/bin/sh -c echo it's"))
    assert odd.exec_start == (("/bin/sh", "-c", "echo", "it's"),)


def test_run_options_stop_at_the_image():
    assert run_options(["--rm", "-v", "/a:/b", "--name", "x", "img", "-d"]) == unitcheck.DockerRun(
        name="x", image="img"
    )


def unit(name: str, container: str) -> Unit:
    return Unit(name, parse("ghcr.io/acme/app:prod"), container, Policy(), Path("config.toml"))


def test_warnings_for_reads_all_units_once():
    calls = []

    def read(names: Sequence[str]) -> list[Definition]:
        calls.append(list(names))
        return [Definition(n, "loaded", after=("docker.service",)) for n in names]

    result = unitcheck.warnings_for([unit("a.service", "a"), unit("b.service", "b")], read)
    assert calls == [["a.service", "b.service"]] and result == {"a.service": (), "b.service": ()}


def test_warnings_for_when_systemd_cannot_be_read():
    def read(names: Sequence[str]) -> list[Definition]:
        raise SystemdError("reading a.service: systemctl not found; is this a systemd host?")

    result = unitcheck.warnings_for([unit("a.service", "a")], read)
    (warning,) = result["a.service"]
    assert "systemctl not found" in warning and "; fix: " in warning
