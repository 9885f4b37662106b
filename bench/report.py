"""The tables and notes on stdout."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from bench.summary import TOOLS, UPDATER_RUN
from bench.targets import targets

HEADER = ("tool", "wall med", "wall min", "CPU med", "peak RSS", "HEAD", "GET", "other", "401s",
          "token", "conns", "runs")  # fmt: skip
RATIO_LABELS = (("wall", "wall_median_s"), ("CPU", "cpu_median_s"), ("RSS", "peak_rss_max_mb"))


def _loads(values: Any) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def print_machine(title: str, results: dict[str, Any]) -> None:
    """The title with the date, the machine and its load at the start, the versions."""
    m = results["machine"]
    print(f"{title}, {m['date_utc']}")
    print(
        f"machine: {m['nproc']} CPUs, {m['cpu_model']}, {m['memory']}, kernel {m['kernel']}, "
        f"{m['os']}; load average at start {_loads(m['loadavg_at_start'])}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in results["versions"].items()))


def print_header(results: dict[str, Any]) -> None:
    """The machine, the versions, how commands are run, and Python's start-up cost."""
    print_machine("updater benchmark", results)
    print(
        f"updater command: {' '.join(results['updater_command'])} "
        f"(imports updater from {results['updater_source']})"
    )
    _print_how(results)
    sys.stdout.flush()


def _print_how(results: dict[str, Any]) -> None:
    """How the commands were run, and what starting Python costs here."""
    launcher = results["launcher"]
    print(
        f"measured through a {launcher['kind']} launcher (wait4 rusage); its peak-RSS "
        f"floor: {launcher['rss_floor_kb'] / 1024:.1f} MB"
    )
    print(f"systemd bus for podman: {results['systemd_bus']}")
    print(
        f"children's environment: {results['child_env']}; DOCKER_HOST is the private "
        "dockerd, DOCKER_CONFIG a temporary one"
    )
    for label, b in results["python_baseline"].items():
        print(
            f"baseline `{label}`: wall {b['wall_median_s']:.3f} s, CPU "
            f"{b['cpu_median_s']:.3f} s, peak RSS {b['peak_rss_mb']:.1f} MB"
        )


def _row(tool: str, s: dict[str, Any]) -> tuple[str, ...]:
    if not s.get("runs"):
        return (tool, *["-"] * (len(HEADER) - 1))
    req = s.get("requests_median", {})
    other = sum(v for k, v in req.items() if k not in ("HEAD", "GET"))
    conns = s.get("connections_median")
    return (
        tool + ("" if s["all_sane"] else " (!)"),
        f"{s['wall_median_s']:.3f} s",
        f"{s['wall_min_s']:.3f} s",
        f"{s['cpu_median_s']:.3f} s",
        f"{s['peak_rss_max_mb']:.1f} MB",
        f"{req.get('HEAD', 0):g}",
        f"{req.get('GET', 0):g}",
        f"{other:g}",
        f"{s.get('unauthorised_median', 0):g}",
        f"{s['token_requests_median']:g}",
        "-" if conns is None else f"{conns:g}",
        str(s["runs"]),
    )


def print_table(rows: list[tuple[str, ...]]) -> None:
    """Rows in columns: the first left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        rest = zip(row[1:], widths[1:], strict=True)
        print("  ".join([row[0].ljust(widths[0])] + [c.rjust(w) for c, w in rest]))


def print_scenario(result: dict[str, Any]) -> None:
    """One case: the table, the ratios to Podman, and notes on anything unexpected."""
    tools = result["tools"]
    title = f"N={result['n']} units, {result['label']}"
    print(f"\n{title}\n{'-' * len(title)}")
    print_table([HEADER, *(_row(tool, tools[tool]) for tool in TOOLS)])
    for tool, r in result["ratios"].items():
        parts = [
            f"{label} {r[k]:.2f}x" if r[k] is not None else f"{label} -"
            for label, k in RATIO_LABELS
        ]
        print(f"ratio {tool} / podman: " + ", ".join(parts))
    if result["scenario"] == "token":
        _print_token_runs(tools)
    _print_notes(tools)
    sys.stdout.flush()


def _print_token_runs(tools: dict[str, Any]) -> None:
    for tool in TOOLS:
        s = tools[tool]
        if s.get("token_requests_each"):
            totals = [sum(x["requests"].values()) for x in s["samples"]]
            print(
                f"per run, {tool}: token requests {s['token_requests_each']}, 401s "
                f"{s['unauthorised_each']}, requests {totals}"
            )


def _print_notes(tools: dict[str, Any]) -> None:
    for tool in TOOLS:
        s = tools[tool]
        if not s.get("runs"):
            continue
        if s.get("requests_vary"):
            print(f"note: {tool}: the requests differed between runs (see results.json)")
        if not s.get("all_sane"):
            notes = {x["note"] for x in s["samples"] if not x["sane"]}
            print(f"note: {tool}: unexpected result: {'; '.join(sorted(notes))[:300]}")


def print_syscalls(n: int, counts: dict[str, Any]) -> None:
    """The syscall counts of one run of each tool, and what each wrote."""
    if "skipped" in counts:
        print(f"\nsyscalls at N={n}: {counts['skipped']}")
        return
    print(
        f"\nsyscalls of one run each under strace -f, N={n} (loopback; connect counts "
        "the Docker socket too):"
    )
    for tool, traced in counts.items():
        print(f"  {tool}: {_calls(traced)}")
    sys.stdout.flush()


def print_metrics_writes(n: int, traced: dict[str, Any]) -> None:
    """What an idle run writes when a metrics file is configured."""
    if "skipped" in traced:
        return
    print(f"  updater run (idle) with [metrics] path, N={n}: {_calls(traced)}")


def _calls(traced: dict[str, Any]) -> str:
    c = traced["counts"]
    renames = sum(v for k, v in c.items() if k.startswith("rename"))
    return (
        f"fsync {c.get('fsync', 0) + c.get('fdatasync', 0)}, rename {renames}, connect "
        f"{c.get('connect', 0)}, execve {c.get('execve', 0)}; opened to write (O_WRONLY, "
        f"O_TRUNC, O_APPEND, O_EXCL) or renamed into place: {_paths(traced['written'])}; "
        f"opened O_RDWR (e.g. to lock): {_paths(traced.get('read_write', []))}"
    )


def _paths(paths: list[str], shown: int = 3) -> str:
    if not paths:
        return "none"
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


def _print_importtime(imp: dict[str, Any], n: int) -> None:
    print(
        f"\nthe installed `updater check` under -X importtime (N={n}): imports "
        f"{imp['total_import_us'] / 1000:.0f} ms under importtime, the updater's "
        f"{imp['updater_us'] / 1000:.0f} ms of them; that run's CPU {imp['cpu_s']:.3f} s"
    )
    print("  the updater's imports, costliest dependencies (cumulative, where first imported):")
    for row in imp["updater_dependencies_by_cumulative"][:12]:
        print(f"  {row['cumulative_us'] / 1000:7.1f} ms  {row['module']}")
    print("  the updater's own modules (self time):")
    for row in imp["updater_modules_by_self"][:6]:
        print(f"  {row['self_us'] / 1000:7.1f} ms  {row['module']}")


def print_growth(results: dict[str, Any]) -> None:
    """How an idle run's cost grows with N on loopback: per unit, and per unit added."""
    rows: list[tuple[str, ...]] = [
        ("N", "wall", "CPU", "peak RSS", "HEAD", "CPU/unit", "CPU/added unit", "wall/unit")
    ]
    cases = sorted((r for r in results["scenarios"] if r["scenario"] == "loopback"),
                   key=lambda r: r["n"])  # fmt: skip
    last: tuple[int, float] | None = None
    for r in cases:
        s = r["tools"][UPDATER_RUN]
        if not s.get("runs") or not r["n"]:
            continue
        n, cpu, wall = r["n"], s["cpu_median_s"], s["wall_median_s"]
        added = f"{(cpu - last[1]) / (n - last[0]) * 1000:.2f} ms" if last else "-"
        rows.append((str(n), f"{wall:.3f} s", f"{cpu:.3f} s", f"{s['peak_rss_max_mb']:.1f} MB",
                     f"{s['requests_median'].get('HEAD', 0):g}", f"{cpu / n * 1000:.2f} ms",
                     added, f"{wall / n * 1000:.2f} ms"))  # fmt: skip
        last = (n, cpu)
    if len(rows) > 1:
        print("\nupdater run (idle) on loopback, as N grows:")
        print_table(rows)


def print_footer(results: dict[str, Any], results_file: Path) -> None:
    """Growth, importtime, the targets, how long it all took and the load average at the end."""
    print_growth(results)
    if results.get("importtime"):
        _print_importtime(results["importtime"], min(results["args"]["n"]))
    print("\ntargets (issues 16 and 5):")
    for line in targets(results):
        print(f"  {line}")
    for skipped in results.get("skipped", []):
        print(f"skipped (time budget): {skipped}")
    print(
        f"\nsetup and measurement took {results['total_seconds']:.0f} s; load average at end "
        f"{_loads(results['loadavg_at_end'])}"
    )
    print(f"results: {results_file}")
