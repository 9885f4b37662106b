"""The command line is parsed the same whether argparse builds every command or only the one
the words name (what every minutely `updater run` does, to start faster)."""

from __future__ import annotations

import pytest

from updater import cli

EVERY_COMMAND = [
    ["run"],
    ["--config", "/c.toml", "run", "--unit", "a.service", "--json"],
    ["-v", "--state-dir=/s", "check", "--unit", "a.service"],
    ["--verbose", "--config=/c.toml", "check", "--config", "/d.toml"],
    ["add", "a.service", "--image", "ghcr.io/o/a:prod", "--container", "a"],
    ["remove", "a.service"],
    ["hold", "a.service", "--reason", "bad release", "--json"],
    ["release", "a.service"],
    ["rollback", "a.service", "--to", "sha256:" + "a" * 64],
    ["approve", "a.service"],
    ["history", "--limit", "5", "--json"],
    ["fleet", "pause", "--reason", "incident"],
    ["--config", "run", "check"],  # a configuration file named "run"
]


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=" ".join)
def test_a_named_command_parses_as_with_every_command_built(argv):
    whole = cli._parser([]).parse_args(argv)  # [] names none: every command is built
    assert cli._named_command(argv) is not None
    assert vars(cli._parser(argv).parse_args(argv)) == vars(whole)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["-h", "run"],
        ["-vh", "run"],  # -v and -h
        ["--conf", "x", "run"],  # an abbreviation: its value is not known to be one word
        ["--", "run"],
        ["--version"],
        ["runn"],
        ["--config"],
    ],
    ids=repr,
)
def test_anything_else_builds_every_command(argv):
    assert cli._named_command(argv) is None


def test_the_help_of_a_command_is_its_own(capsys):
    with pytest.raises(SystemExit):
        cli._parser(["hold", "--help"]).parse_args(["hold", "--help"])
    assert "--reason TEXT" in capsys.readouterr().out


def test_columns_follow_the_environment(monkeypatch):
    monkeypatch.setenv("COLUMNS", "123")
    assert cli._columns() == 123
    monkeypatch.setenv("COLUMNS", "wide")
    assert cli._columns() >= 1  # the terminal's, or 80
