"""The operator's commands in-process, where no engine is needed: bad input is exit 2 with
nothing written, the lock is exit 3, hold and release round-trip through the state file."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from updater.cli import main
from updater.systems.state import lock

DIGEST = "sha256:" + "2" * 64


class Cli:
    """The real CLI in-process, with a configuration of an auto and a manual unit."""

    def __init__(self, root: Path) -> None:
        self.config, self.state = root / "config.toml", root / "state"
        self.config.write_text(
            '[units."a.service"]\nimage = "127.0.0.1:1/a:prod"\n'
            '[units."m.service"]\nimage = "127.0.0.1:1/m:prod"\nmode = "manual"\n'
        )

    def __call__(self, *args: str) -> tuple[int, Any]:
        """The exit code, and the JSON printed (or the text when it is not JSON)."""
        out = io.StringIO()
        argv = ["--config", str(self.config), "--state-dir", str(self.state), *args]
        code = main(argv, stdout=out)
        text = out.getvalue()
        return code, json.loads(text) if text.strip().startswith(("{", "[")) else text


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.mark.parametrize(
    "args",
    [
        ("hold", "x.service"),
        ("release", "x.service"),
        ("rollback", "x.service"),
        ("rollback", "a.service", "--to", "sha256:short"),
        ("approve", "a.service", DIGEST),  # not a manual unit
        ("approve", "m.service", "latest"),
        ("history", "x.service"),
        ("history", "--limit", "0"),
        ("history", "--limit", "many"),
    ],
)
def test_bad_input_is_exit_2_and_writes_nothing(cli, args):
    code, _ = cli(*args)
    assert code == 2
    assert not (cli.state / "state.json").exists()


def test_hold_release_and_their_history(cli):
    code, held = cli("hold", "a.service", "--reason", "INC-42", "--json")
    assert code == 0 and held["held"] and held["reason"] == "INC-42"
    code, again = cli("hold", "a.service", "--reason", "INC-43", "--json")
    assert again["since"] == held["since"] and again["reason"] == "INC-43"
    code, released = cli("release", "a.service", "--json")
    assert code == 0 and released == {
        "unit": "a.service",
        "held": False,
        "reason": None,
        "since": None,
    }
    code, lines = cli("history", "--json")
    assert [(x["unit"], x["event"], x["reason"]) for x in lines] == [
        ("a.service", "held", "INC-42"),
        ("a.service", "held", "INC-43"),
        ("a.service", "released", None),
    ]
    code, lines = cli("history", "a.service", "--limit", "1", "--json")
    assert [x["event"] for x in lines] == ["released"]
    code, text = cli("history")
    assert code == 0 and text.splitlines()[0].split() == [
        "AT",
        "UNIT",
        "EVENT",
        "FROM",
        "TO",
        "WHY",
    ]


def test_approve_of_a_named_digest_needs_no_registry(cli):
    code, approved = cli("approve", "m.service", DIGEST, "--json")
    assert code == 0 and approved == {"unit": "m.service", "approved": DIGEST}


def test_a_command_waits_for_no_run_exit_3(cli):
    with lock(cli.state):
        code, _ = cli("hold", "a.service")
    assert code == 3
