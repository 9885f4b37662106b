"""`python3 -m bench.policies`: what the per-unit policies of issue 14 cost a run.

N units of each kind in one loopback registry, run by the updater as updater.service runs it
(bench.world, bench.installed): idle runs of plain, `follow`, `min_age` and `verify` units, then
the first run after a new digest appears for `verify` units signed by another key (rejected)
and `min_age` units (skipped), and the run after it. Each run's JSON report is checked; the
registry's access log says which requests it made. bench/README.md ("Policies") says more.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from bench.kinds import MIN_AGE_KIND, VERIFY, Bed, Kind
from bench.launcher import Launcher
from bench.log import log
from bench.machine import machine_info, versions
from bench.report import print_machine, print_table
from bench.world import World
from testbed.registry import Request
from testbed.signing import COSIGN

RESULTS = Path(__file__).resolve().parent / "policies.json"
REQUIRED = ("dockerd", "docker", "docker-registry", "runc")
HEAD = "HEAD manifest"
KINDS_OF_REQUEST = (HEAD, "GET tags/list", "GET manifest", "GET blob", "GET referrers", "other")
COLUMNS = ("HEAD man", "GET tags", "GET man", "GET blob", "GET refs", "other")
_API = re.compile(r"/v2/.+?/(manifests|blobs|tags|referrers)/(.*)")
_HEX = re.compile(r"[0-9a-f]{64}")
_GETS = {"tags": "GET tags/list", "manifests": "GET manifest", "blobs": "GET blob",
         "referrers": "GET referrers"}  # fmt: skip

OPTIONS: tuple[tuple[str, Callable[[str], Any], Any, str], ...] = (
    ("--n", int, 10, "units of each kind (default 10)"),
    ("--repeat", int, 5, "counted idle runs per kind, after a warm-up (median; default 5)"),
    ("--rounds", int, 3, "new digests pushed, after a warm-up round (median; default 3)"),
    ("--few-tags", int, 20, "version tags of the few-tags follow units (default 20)"),
    ("--many-tags", int, 2500, "version tags of the many-tags follow units (default 2500)"),
)  # fmt: skip


class BenchError(Exception):
    """A run did not end as the set-up means it to: its figures would be of something else."""


@dataclass(frozen=True)
class Expect:
    """What every unit's report must say."""

    outcome: str
    exit_code: int = 0
    tag: str | None = None  # the tag a follow unit chose
    digests: Mapping[str, str] | None = None  # unit: the new digest its report names
    says: str = ""  # in every report's error


@dataclass(frozen=True)
class Sample:
    """One run: what the kernel and the registry saw."""

    wall: float
    cpu: float
    maxrss_kb: int
    requests: dict[str, int]  # by kind of request
    shapes: dict[str, int]  # "GET manifests/sha256-<hex>.sig 404": how many


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The options bench/README.md lists; exits with a usage message when they make no sense."""
    p = argparse.ArgumentParser(
        prog="python3 -m bench.policies", description=__doc__.split("\n")[0]
    )
    for flag, kind, default, text in OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=text)
    args = p.parse_args(argv)
    if min(args.n, args.repeat, args.rounds, args.few_tags, args.many_tags) < 1:
        p.error("every option must be at least 1")
    return args


def preflight() -> None:
    """Root, and the real components."""
    if os.geteuid() != 0:
        sys.exit("bench.policies: run as root (it starts dockerd and a registry)")
    missing = [c for c in (*REQUIRED, str(COSIGN)) if shutil.which(c) is None]
    if missing:
        sys.exit(f"bench.policies: missing {', '.join(missing)}: run `sudo tests/run` first")


# ---------------------------------------------------------------------------- one run


def request_kind(r: Request) -> str:
    """HEAD manifest, GET tags/list, GET manifest, GET blob, GET referrers or other."""
    found = _API.fullmatch(r.path)
    section = found[1] if found else ""
    if r.method == "HEAD" and section == "manifests":
        return HEAD
    return _GETS.get(section, "other") if r.method == "GET" else "other"


def shape(r: Request) -> str:
    """The request without its repository and digests: `GET blobs/sha256:<hex> 200`."""
    found = _API.fullmatch(r.path)
    where = f"{found[1]}/{_HEX.sub('<hex>', found[2])}" if found else r.path
    return f"{r.method} {where} {r.status}"


def sample(
    world: World, launcher: Launcher, kind: Kind, n: int, state: Path, expect: Expect
) -> Sample:
    """One `updater run --json` of the kind's n units; BenchError unless it ended as expected."""
    world.registry.clear_log()
    paths = ["--config", str(kind.config), "--state-dir", str(state)]
    run = launcher.run([*world.updater_cmd, *paths, "run", "--json"], world.child_env())
    seen = world.registry.requests()
    try:
        reports = json.loads(run.stdout)
    except ValueError:
        reports = None
    problem = _wrong(reports, run.exit_code, kind, n, expect)
    if problem:
        tail = run.stderr.strip()[-600:]
        raise BenchError(f"{kind.label}: expected every unit {expect.outcome}: {problem}\n{tail}")
    return Sample(
        wall=run.wall,
        cpu=run.cpu,
        maxrss_kb=run.maxrss_kb,
        requests=dict(Counter(request_kind(r) for r in seen)),
        shapes=dict(Counter(shape(r) for r in seen)),
    )


def _wrong(reports: Any, code: int, kind: Kind, n: int, expect: Expect) -> str:
    """What in the run's report is not what `expect` says, or ""."""
    if not isinstance(reports, list):
        return f"exit {code}, no JSON report"
    units = {kind.unit(i) for i in range(n)}
    if code != expect.exit_code or {r.get("unit") for r in reports} != units:
        return f"exit {code}, {len(reports)} reports: {Counter(r.get('outcome') for r in reports)}"
    for r in reports:
        digest = expect.digests[r["unit"]] if expect.digests else r["to_digest"]
        if (
            r["outcome"] != expect.outcome
            or (expect.tag and r["tag"] != expect.tag)
            or r["to_digest"] != digest
            or expect.says not in (r["error"] or "")
        ):
            return f"{r['unit']}: {json.dumps(r)}"
    return ""


# ---------------------------------------------------------------------------- the cases


def idle(world: World, launcher: Launcher, bed: Bed, repeat: int) -> list[dict[str, Any]]:
    """Idle runs of every kind, interleaved so that a burst of load hits them all alike."""
    kinds = list(bed.kinds.values())
    state = {k.key: world.ws / "state" / f"idle-{k.key}" for k in kinds}
    samples: dict[str, list[Sample]] = {k.key: [] for k in kinds}
    for counted in [False] + [True] * repeat:  # the warm-up writes the bytecode cache
        for k in kinds:
            got = sample(world, launcher, k, bed.n, state[k.key], Expect("unchanged", tag=k.tag))
            if counted:
                samples[k.key].append(got)
    allowed = {k.key: {HEAD: 1, "GET tags/list": k.tags_lists} for k in kinds}
    return [figures(k.key, k.label, samples[k.key], bed.n, allowed[k.key]) for k in kinds]


# The gated kinds' two runs after a new digest: (kind, run): what every report must say.
NEW_DIGEST: dict[tuple[str, str], Expect] = {
    (VERIFY, "first"): Expect("rejected", 1, says="signature: "),
    (MIN_AGE_KIND, "first"): Expect("skipped", says="min_age lets it be deployed from"),
    (VERIFY, "next"): Expect("skipped", says="waiting for a new digest"),
    (MIN_AGE_KIND, "next"): Expect("skipped", says="min_age lets it be deployed from"),
}
LABELS = {
    (VERIFY, "first"): "verify, another key's signature: 1st run",
    (VERIFY, "next"): "verify: the run after",
    (MIN_AGE_KIND, "first"): "min_age 1h, built now: 1st run",
    (MIN_AGE_KIND, "next"): "min_age 1h: the run after",
}


def new_digest(world: World, launcher: Launcher, bed: Bed, rounds: int) -> list[dict[str, Any]]:
    """Rounds of: a new digest on every gated unit's tag, its first run, the run after."""
    gated = (bed.kinds[VERIFY], bed.kinds[MIN_AGE_KIND])
    state = {k.key: world.ws / "state" / f"new-{k.key}" for k in gated}
    samples: dict[tuple[str, str], list[Sample]] = {case: [] for case in NEW_DIGEST}
    for round_ in range(rounds + 1):  # round 0: the warm-up (the signature code's bytecode)
        log(f"new digests, round {round_}{' (warm-up, not counted)' if not round_ else ''}")
        pushed = {k.key: bed.push_new(k, round_) for k in gated}
        for case, expect in NEW_DIGEST.items():
            k = bed.kinds[case[0]]
            got = sample(
                world, launcher, k, bed.n, state[k.key], replace(expect, digests=pushed[k.key])
            )
            if round_:
                samples[case].append(got)
    next_allowed = {HEAD: 1}
    return [
        figures(f"{key}-{run}", LABELS[key, run], samples[key, run], bed.n,
                next_allowed if run == "next" else None)
        for key, run in NEW_DIGEST
    ]  # fmt: skip


def figures(
    key: str, label: str, samples: list[Sample], n: int, allowed: dict[str, int] | None
) -> dict[str, Any]:
    """Medians of one case, per run and per unit; whether every run kept to `allowed`."""
    med = statistics.median
    per_run = {k: med(s.requests.get(k, 0) for s in samples) for k in KINDS_OF_REQUEST}
    shapes = list(dict.fromkeys(x for s in samples for x in s.shapes))  # in the log's order
    within = None
    if allowed is not None:
        within = all(
            s.requests.get(k, 0) <= allowed.get(k, 0) * n for s in samples for k in KINDS_OF_REQUEST
        )
    return {
        "key": key,
        "label": label,
        "n": n,
        "runs": len(samples),
        "wall_median_s": med(s.wall for s in samples),
        "wall_min_s": min(s.wall for s in samples),
        "cpu_median_s": med(s.cpu for s in samples),
        "peak_rss_max_mb": max(s.maxrss_kb for s in samples) / 1024,
        "requests_median": per_run,
        "requests_per_unit": med(sum(s.requests.values()) for s in samples) / n,
        "shapes_per_unit": {x: med(s.shapes.get(x, 0) for s in samples) / n for x in shapes},
        "requests_vary": len({tuple(sorted(s.requests.items())) for s in samples}) > 1,
        "allowed_per_unit": allowed,
        "within_allowance": within,
        "samples": [asdict(s) for s in samples],
    }


# ---------------------------------------------------------------------------- output


def _allowance(f: dict[str, Any]) -> str:
    allowed = f["allowed_per_unit"]
    if allowed is None:
        return "-"
    lists = allowed.get("GET tags/list", 0)
    also = f" + {lists} tags list{'s' if lists > 1 else ''}" if lists else ""
    return f"<= {allowed[HEAD]} HEAD{also}: {'met' if f['within_allowance'] else 'NOT MET'}"


def print_case(title: str, rows: list[dict[str, Any]]) -> None:
    """One table (requests are medians per run of N units), then each row's requests per unit."""
    print(f"\n{title}\n{'-' * len(title)}")
    header = ("case", "wall med", "CPU med", "peak RSS", *COLUMNS, "per unit", "issue 14: per unit",
              "runs")  # fmt: skip
    table: list[tuple[str, ...]] = [header]
    for f in rows:
        counts = (f"{f['requests_median'][k]:g}" for k in KINDS_OF_REQUEST)
        table.append((f["label"], f"{f['wall_median_s']:.3f} s", f"{f['cpu_median_s']:.3f} s",
                      f"{f['peak_rss_max_mb']:.1f} MB", *counts, f"{f['requests_per_unit']:g}",
                      _allowance(f), str(f["runs"])))  # fmt: skip
    print_table(table)
    print("requests per unit and run (median), as the registry logged them:")
    for f in rows:
        said = ", ".join(f"{x} x{v:g}" for x, v in f["shapes_per_unit"].items() if v)
        vary = " (they varied between runs: see policies.json)" if f["requests_vary"] else ""
        print(f"  {f['label']}: {said or 'none'}{vary}")
    sys.stdout.flush()


def print_verdict(results: dict[str, Any]) -> None:
    """Whether every counted run kept to what issue 14 allows it."""
    checked = [f for f in results["idle"] + results["new_digest"] if f["allowed_per_unit"]]
    over = [f["label"] for f in checked if not f["within_allowance"]]
    results["issue_14_point_4_met"] = not over
    if over:
        print(f"\nissue 14 point 4: NOT MET by {'; '.join(over)}")
        return
    print(f"\nissue 14 point 4: met by every counted run of the {len(checked)} cases it bounds "
          "(1 HEAD per unit, and one tags list per 1000 tags for follow)")  # fmt: skip


def print_header(results: dict[str, Any]) -> None:
    """The machine, the versions, the command and the kinds."""
    print_machine("updater policies benchmark (issue 14)", results)
    print(f"updater command: {' '.join(results['updater_command'])} ... run --json")
    print(f"measured through a {results['launcher']} launcher (wait4 rusage); N = "
          f"{results['args']['n']} units of each kind, one registry (docker-registry)")  # fmt: skip
    for k in results["kinds"]:
        policy = "; ".join(k["policy"]) or "no policy"
        print(f"  {k['label']}: {policy}" + (f", chooses {k['tag']}" if k["tag"] else ""))
    print("  docker-registry 2.8 ignores `n` and lists every tag at once; the `paged` units reach "
          "the same repositories through bench.paging's front, 1000 tags a page with Link, as "
          "distribution 3 and hosted registries page")  # fmt: skip
    sys.stdout.flush()


def measure(args: argparse.Namespace, world: World, bed: Bed) -> dict[str, Any]:
    """Set up, measure both cases, print as it goes; the results as policies.json holds them."""
    results: dict[str, Any] = {"machine": machine_info(), "args": vars(args)}
    world.start()
    launcher = world.launcher
    assert launcher is not None, "World.start() makes the launcher"
    results["versions"] = {k: v for k, v in versions().items() if k != "podman"}
    results["updater_command"] = world.updater_cmd
    results["launcher"] = launcher.kind
    log("setting up the units of each kind")
    bed.set_up()
    results["kinds"] = [{"key": k.key, "label": k.label, "policy": list(k.policy), "tag": k.tag}
                        for k in bed.kinds.values()]  # fmt: skip
    print_header(results)
    log("idle runs")
    results["idle"] = idle(world, launcher, bed, args.repeat)
    print_case(f"idle `updater run` (nothing changed), N={args.n} of each kind", results["idle"])
    results["new_digest"] = new_digest(world, launcher, bed, args.rounds)
    print_case(f"a new digest on every unit's tag, N={args.n}", results["new_digest"])
    print_verdict(results)
    return results


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the tables, write policies.json; 1 when a run ended otherwise than set
    up to, 130 when interrupted."""
    args = parse_args(argv)
    preflight()
    started = time.monotonic()
    workspace = Path(tempfile.mkdtemp(prefix="updater-bench-policies-"))
    world = World(workspace, proxy=False, token=False)
    bed = Bed(world, args.n, args.few_tags, args.many_tags)
    signal.signal(signal.SIGTERM, _interrupted)  # clean up on SIGTERM as on Ctrl-C
    try:
        results = measure(args, world, bed)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except BenchError as err:
        log(f"stopped, no figures: {err}")
        return 1
    finally:
        bed.stop()
        world.cleanup()
    results["total_seconds"] = time.monotonic() - started
    results["loadavg_at_end"] = os.getloadavg()
    print(f"\nset-up and measurement took {results['total_seconds']:.0f} s; load average at end "
          + ", ".join(f"{x:.2f}" for x in results["loadavg_at_end"]))  # fmt: skip
    print(f"results: {RESULTS}")
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
