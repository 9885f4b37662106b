"""The command line: parse arguments, call the check or the run, print, choose the exit code."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import Protocol, TextIO

from updater import __version__, config
from updater.errors import ConfigError, Interrupted, LockHeld, UpdaterError
from updater.outputs.log import setup as setup_logging

log = logging.getLogger("updater")


class Printable(Protocol):
    """What a person's command returns: something with a JSON form."""

    def as_json(self) -> dict[str, object]: ...


DEFAULT_CONFIG = "/etc/updater/config.toml"
DEFAULT_STATE_DIR = "/var/lib/updater"


class ExitStatus(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    LOCKED = 3


def main(argv: Sequence[str] | None = None, stdout: TextIO | None = None) -> int:
    """Run one command; every error becomes a message and an exit status, never a traceback."""
    out = stdout or sys.stdout
    parser = _parser(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    _resolve_paths(args)
    setup_logging(args.verbose)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return int(args.command(args, out))
    except LockHeld as err:
        log.warning("%s", err)
        return ExitStatus.LOCKED
    except ConfigError as err:
        log.error("%s", err)
        return ExitStatus.USAGE
    except UpdaterError as err:
        log.error("%s", err)
        return ExitStatus.FAILED
    except (Interrupted, KeyboardInterrupt) as err:
        log.warning("%s", err or "interrupted; the next run finishes what this one began")
        return ExitStatus.FAILED


def _resolve_paths(args: argparse.Namespace) -> None:
    """Flag, then environment, then what systemd provides, then the default."""
    env = os.environ
    if "config" not in args:
        args.config = Path(env.get("UPDATER_CONFIG") or DEFAULT_CONFIG)
    if "state_dir" not in args:
        systemd_dir = env.get("STATE_DIRECTORY", "").split(":")[0]
        args.state_dir = Path(env.get("UPDATER_STATE_DIR") or systemd_dir or DEFAULT_STATE_DIR)
    args.verbose = getattr(args, "verbose", False)


def entry() -> None:
    sys.exit(main())


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"stopped by signal {signal.Signals(signum).name}; the next run finishes")


def _check(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from updater.commands.check import check
    from updater.decisions.checked import Status
    from updater.outputs.checktable import check_table

    conf = config.load(args.config)
    results = check(conf, conf.select(args.unit), args.state_dir)
    if args.json:
        _print_json([r.as_json() for r in results], out)
    else:
        out.write(check_table(results))
    failed = any(r.status is Status.ERROR for r in results)
    return ExitStatus.FAILED if failed else ExitStatus.OK


def _run(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from updater.commands.run import run
    from updater.models.outcome import any_bad

    conf = config.load(args.config)
    reports = run(conf, conf.select(args.unit), args.state_dir)
    if args.json:
        _print_json([r.as_json() for r in reports], out)
    return ExitStatus.FAILED if any_bad(reports) else ExitStatus.OK


def _add(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from updater.decisions import unitcheck
    from updater.systems import compose, systemd

    keys = {"image": args.image, "container": args.container}
    path = config.add_unit(
        args.config, args.name, keys | {"compose": args.compose, "project": args.project}
    )
    log.info("%s: written to %s", args.name, path)
    units = config.load(args.config).select([args.name])
    for warning in unitcheck.warnings_for(units, systemd.definitions, compose.services)[args.name]:
        log.warning("%s: warning: %s", args.name, warning)
    return ExitStatus.OK


def _remove(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    path = config.remove_unit(args.config, args.name)
    log.info("%s: removed %s", args.name, path)
    return ExitStatus.OK


def _hold(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from updater.commands.control import hold

    return _said(hold(config.load(args.config), args.name, args.reason, args.state_dir), args, out)


def _release(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from updater.commands.control import release

    return _said(release(config.load(args.config), args.name, args.state_dir), args, out)


def _said(done: Printable, args: argparse.Namespace, out: TextIO) -> ExitStatus:
    """What a person's command did, as JSON with `--json` (the journal has the line anyway)."""
    if args.json:
        _print_json(done.as_json(), out)
    return ExitStatus.OK


def _rollback(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from updater.commands.control import rollback
    from updater.models.outcome import Outcome

    report = rollback(config.load(args.config), args.name, args.to, args.state_dir)
    if args.json:
        _print_json(report.as_json(), out)
    if report.outcome is not Outcome.ROLLED_BACK:
        log.error("%s: %s", report.unit, report.error)
        return ExitStatus.FAILED
    return ExitStatus.OK


def _approve(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from updater.commands.control import approve

    return _said(
        approve(config.load(args.config), args.name, args.digest, args.state_dir), args, out
    )


def _history(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    from updater.outputs import history
    from updater.systems.state import State

    if args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: must be 1 or more")
    state = State.load(args.state_dir, set_aside=False)
    lines = state.history()
    if args.name:
        known = {u.name for u in config.load(args.config).units} | {u for u, _ in lines}
        if args.name not in known:
            raise ConfigError(f"{args.name}: not configured and no history; nothing to show")
        lines = [line for line in lines if line[0] == args.name]
    lines = lines[-args.limit :]
    if args.json:
        _print_json([history.as_json(unit, entry) for unit, entry in lines], out)
    else:
        out.write(history.table(lines))
    return ExitStatus.OK


def _fleet(args: argparse.Namespace, out: TextIO) -> ExitStatus:
    """`updater fleet status|pause|resume`: the group as etcd holds it, or its one switch."""
    from updater.commands import run
    from updater.commands.rollout import fleet_table

    conf = config.load(args.config)
    if conf.fleet is None:
        raise ConfigError(f"{args.config}: no [fleet] table; this host is in no fleet group")
    with run.rollout_of(conf.fleet) as rollout:
        if args.action == "pause":
            rollout.pause(args.reason)
            log.info("fleet %s: paused; no host starts an update until resume", conf.fleet.group)
        elif args.action == "resume":
            rollout.resume()
            log.info("fleet %s: resumed", conf.fleet.group)
        found = rollout.status()
    if args.json:
        _print_json(found, out)
    elif args.action == "status":
        out.write(fleet_table(found))
    return ExitStatus.OK


def _print_json(items: list[dict[str, object]] | dict[str, object], out: TextIO) -> None:
    out.write(json.dumps(items, indent=2) + "\n")


def _parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The command line. Of the commands, only the one `argv` names is built when it names one
    plainly: `updater run` every minute pays for one of them, not for all (~2 ms of argparse)."""
    common = argparse.ArgumentParser(add_help=False, formatter_class=_Formatter)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"main configuration file (default: $UPDATER_CONFIG, else {DEFAULT_CONFIG})",
    )
    common.add_argument(
        "--state-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="state directory (default: $UPDATER_STATE_DIR, $STATE_DIRECTORY, "
        f"{DEFAULT_STATE_DIR})",
    )
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="updater",
        description="Keep containers run by systemd units on the digest their registry tag "
        "points to; restart through systemd, prove health, roll back.",
        parents=[common],
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"updater {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    named = _named_command(argv)
    for name, (summary, command, arguments) in _COMMANDS.items():
        if named in (None, name):
            sub = commands.add_parser(
                name, parents=[common], help=summary, formatter_class=_Formatter
            )
            sub.set_defaults(command=command)
            arguments(sub)
    return parser


def _named_command(argv: Sequence[str]) -> str | None:
    """The command `argv` names, when all before it are the options every command takes, spelt
    out in full; else None (help, an abbreviation, a typo): then the parser is built whole."""
    words = list(argv)
    while words:
        word = words.pop(0)
        if word in ("--config", "--state-dir") and words:
            words.pop(0)
        elif not (word in ("-v", "--verbose") or word.startswith(("--config=", "--state-dir="))):
            return word if word in _COMMANDS else None
    return None


class _Formatter(argparse.HelpFormatter):
    """argparse's layout, as wide as the terminal, measured without shutil: argparse makes a
    formatter for every argument it adds, and shutil's import (bz2, lzma, ...) would cost every
    minutely run ~1.5 ms."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_columns() - 2)  # less 2, as argparse takes it


def _columns() -> int:
    """The terminal's width as shutil.get_terminal_size() finds it: $COLUMNS, stdout's, or 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
        return 80


def _selection(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--unit", action="append", default=[], metavar="UNIT")
    sub.add_argument("--json", action="store_true", help="print a JSON array")


def _add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("name", metavar="UNIT")
    sub.add_argument("--image", metavar="REF")
    sub.add_argument("--container", metavar="NAME")
    sub.add_argument("--compose", metavar="FILE", help="the compose file the unit runs")
    sub.add_argument("--project", metavar="NAME", help="its project name, when not compose's own")


def _unit(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("name", metavar="UNIT")


def _hold_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("name", metavar="UNIT")
    sub.add_argument("--reason", default="", metavar="TEXT")
    _json_object(sub)


def _release_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("name", metavar="UNIT")
    _json_object(sub)


def _rollback_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("name", metavar="UNIT")
    sub.add_argument("--to", metavar="DIGEST", help="a digest the engine still has")
    _json_object(sub)


def _approve_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("name", metavar="UNIT")
    sub.add_argument("digest", nargs="?", metavar="DIGEST", help="default: the tag's now")
    _json_object(sub)


def _history_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("name", nargs="?", metavar="UNIT")
    sub.add_argument("--limit", type=int, default=20, metavar="N", help="last N lines (20)")
    sub.add_argument("--json", action="store_true", help="print a JSON array")


def _fleet_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("action", choices=["status", "pause", "resume"])
    sub.add_argument("--reason", default="", metavar="TEXT", help="why it is paused")
    _json_object(sub)


def _json_object(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--json", action="store_true", help="print a JSON object")


Command = Callable[[argparse.Namespace, TextIO], ExitStatus]
Arguments = Callable[[argparse.ArgumentParser], None]
# Each command: what `updater --help` says of it, what it runs, and its own arguments.
_COMMANDS: dict[str, tuple[str, Command, Arguments]] = {
    "check": ("compare digests; touch nothing", _check, _selection),
    "run": ("update units whose tag moved", _run, _selection),
    "add": ("write config.d/UNIT.toml", _add, _add_arguments),
    "remove": ("delete config.d/UNIT.toml", _remove, _unit),
    "hold": ("check UNIT but never touch it", _hold, _hold_arguments),
    "release": ("undo `hold`", _release, _release_arguments),
    "rollback": (
        "go back to the image kept before the last update",
        _rollback,
        _rollback_arguments,
    ),
    "approve": ("let the next run deploy a manual unit's new digest", _approve, _approve_arguments),
    "history": ("what was deployed when", _history, _history_arguments),
    "fleet": ("the fleet group: status, or pause and resume it", _fleet, _fleet_arguments),
}
