"""`python3 -m bench`: the command line."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from bench import __doc__ as about
from bench.cases import Plan, Run
from bench.log import log
from bench.podman import ensure_podman
from bench.report import print_footer
from bench.world import World

RESULTS = Path(__file__).resolve().parent / "results.json"
REQUIRED = ("dockerd", "docker", "docker-registry", "runc")


def sizes(text: str) -> tuple[int, ...]:
    """A comma-separated list of unit counts."""
    values = tuple(int(x) for x in text.split(",") if x.strip())
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("sizes must not be negative")
    return values


# (flag, type, default, help) of each valued option; --profile is a switch.
OPTIONS: tuple[tuple[str, Callable[[str], Any], Any, str], ...] = (
    ("--n", sizes, (10, 20, 50, 200, 1000), "numbers of units (default 10,20,50,200,1000)"),
    ("--podman-max-n", int, 200, "Podman is set up and measured up to this N (default 200)"),
    ("--latency-ms", float, 50.0,
     "added round-trip time behind the proxy, ms (default 50; 0: no proxy)"),
    ("--latency-n", sizes, (20, 50), "the N measured behind the proxy too (default 20,50)"),
    ("--repeat", int, 5, "runs per tool and case (median; default 5)"),
    ("--case-seconds", float, 40.0,
     "stop repeating a tool in a case after this much wall time (>= 3 runs; default 40)"),
    ("--token-n", int, 10, "units in the auth=token case (default 10; 0: skip)"),
    ("--max-minutes", float, 12.0, "skip the remaining cases after this long (default 12)"),
)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    """The options bench/README.md lists."""
    p = argparse.ArgumentParser(prog="python3 -m bench", description=(about or "").split("\n")[0])
    for flag, kind, default, text in OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=text)
    p.add_argument(
        "--profile",
        action="store_true",
        help="also print a cProfile of `updater check` and `updater run` at the smallest N",
    )
    return p


def parse_plan(argv: Sequence[str] | None) -> Plan:
    """The options as a Plan; exits with a usage message when they make no sense."""
    p = parser()
    args = p.parse_args(argv)
    if args.repeat < 1 or not args.n:
        p.error("--repeat must be >= 1 and --n must name a size")
    return Plan(**vars(args))


def preflight() -> None:
    """Root, and the real components (Podman is installed when missing)."""
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it starts dockerd, a registry and podman containers)")
    missing = [c for c in REQUIRED if shutil.which(c) is None]
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)}: run `sudo tests/run` first")
    ensure_podman()
    if shutil.which("podman") is None:
        sys.exit("bench: podman is still missing after apt-get install podman")


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the tables, write results.json; 130 when interrupted."""
    plan = parse_plan(argv)
    preflight()
    started = time.monotonic()
    workspace = Path(tempfile.mkdtemp(prefix="updater-bench-"))
    world = World(workspace, proxy=plan.proxy, token=plan.token_n > 0)
    signal.signal(signal.SIGTERM, _interrupted)  # clean up on SIGTERM as on Ctrl-C
    try:
        results = Run(plan, world, started).run()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        world.cleanup()
    results["total_seconds"] = time.monotonic() - started
    results["loadavg_at_end"] = os.getloadavg()
    print_footer(results, RESULTS)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
