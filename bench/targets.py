"""The issues' targets, read off the results (reported, not asserted): issue 16's on the idle
run's cost and writes, and issue 5's that still hold the line on requests, RSS and tokens."""

from __future__ import annotations

from typing import Any

from bench.summary import UPDATER_CHECK, UPDATER_RUN


def verdict(ok: bool) -> str:
    """How a target reads in the report."""
    return "met" if ok else "NOT met"


def find(results: dict[str, Any], n: int, scenario: str) -> dict[str, Any] | None:
    """The case of `scenario` at N = n, if it was measured."""
    for r in results["scenarios"]:
        if r["n"] == n and r["scenario"] == scenario:
            return r
    return None


def targets(results: dict[str, Any]) -> list[str]:
    """One line per target the measured cases say something about."""
    lines = one_head_per_unit(results)
    for target in (idle_vs_podman, loopback_wall, no_writes, proxy_wall, peak_rss, cached_token):
        line = target(results)
        if line:
            lines.append(line)
    return lines


def one_head_per_unit(results: dict[str, Any]) -> list[str]:
    """A HEAD per unit and nothing else, in every case without auth."""
    lines = []
    for r in results["scenarios"]:
        if r["scenario"] == "token":
            continue
        for tool in (UPDATER_CHECK, UPDATER_RUN):
            s = r["tools"][tool]
            if not s.get("runs"):
                continue
            heads, total = s["requests_median"].get("HEAD", 0), s["requests_total_median"]
            ok = heads == r["n"] and total == r["n"]
            lines.append(
                f"one HEAD per unit, {tool}, N={r['n']} {r['label']}: "
                f"{heads:g} HEAD, {total:g} requests: {verdict(ok)}"
            )
    return lines


def _wall_ratios(r: dict[str, Any]) -> tuple[float, float] | None:
    check = r["ratios"][UPDATER_CHECK]["wall_median_s"]
    run = r["ratios"][UPDATER_RUN]["wall_median_s"]
    return None if check is None or run is None else (check, run)


def proxy_wall(results: dict[str, Any]) -> str | None:
    """N=50 behind the added RTT: wall at most 0.1x Podman's."""
    r = find(results, 50, "proxy")
    walls = _wall_ratios(r) if r else None
    if r is None or walls is None:
        return None
    return (
        f"N=50 behind {r['latency_ms']:g} ms RTT, wall <= 0.1x podman: check {walls[0]:.2f}x, "
        f"run {walls[1]:.2f}x: {verdict(max(walls) <= 0.1)}"
    )


def loopback_wall(results: dict[str, Any]) -> str | None:
    """N=20 on loopback: wall at most Podman's."""
    r = find(results, 20, "loopback")
    walls = _wall_ratios(r) if r else None
    if walls is None:
        return None
    return (
        f"N=20 loopback, wall <= 1.0x podman: check {walls[0]:.2f}x, "
        f"run {walls[1]:.2f}x: {verdict(max(walls) <= 1.0)}"
    )


def idle_vs_podman(results: dict[str, Any]) -> str | None:
    """An idle run at N=10 on loopback: CPU and wall at most Podman's."""
    r = find(results, 10, "loopback")
    ratio = r["ratios"].get(UPDATER_RUN, {}) if r else {}
    cpu, wall = ratio.get("cpu_median_s"), ratio.get("wall_median_s")
    if cpu is None or wall is None:
        return None
    return (
        f"idle run N=10 loopback, CPU and wall <= 1.0x podman: CPU {cpu:.2f}x, wall "
        f"{wall:.2f}x: {verdict(max(cpu, wall) <= 1.0)}"
    )


def no_writes(results: dict[str, Any]) -> str | None:
    """An idle run writes nothing (no fsync, no rename, no file), or only the metrics file."""
    smallest = str(min(results["args"]["n"]))
    plain = results.get("syscalls", {}).get(smallest, {}).get(UPDATER_RUN)
    metrics = results.get("writes_with_metrics")
    if not plain or not metrics or "counts" not in metrics:
        return None
    c = plain["counts"]
    quiet = not plain["written"] and not c.get("fsync") and not c.get("fdatasync")
    quiet = quiet and not any(c.get(k) for k in ("rename", "renameat", "renameat2"))
    only_metrics = all(path.endswith(".prom") or ".prom." in path for path in metrics["written"])
    return (
        f"idle run N={smallest} writes nothing without a metrics file "
        f"({', '.join(plain['written']) or 'nothing written'}), only it with one "
        f"({', '.join(metrics['written']) or 'nothing'}): {verdict(quiet and only_metrics)}"
    )


def peak_rss(results: dict[str, Any]) -> str | None:
    """N=200: peak RSS at most 40 MB."""
    r = find(results, 200, "loopback")
    if r is None:
        return None
    rss = max(r["tools"][t].get("peak_rss_max_mb", 0) for t in (UPDATER_CHECK, UPDATER_RUN))
    return f"peak RSS <= 40 MB at N=200: {rss:.1f} MB: {verdict(rss <= 40)}"


def cached_token(results: dict[str, Any]) -> str | None:
    """auth=token: no token request on the second run (the first one's token is cached)."""
    r = find(results, results["args"]["token_n"], "token")
    each = r["tools"][UPDATER_RUN].get("token_requests_each", []) if r else []
    if r is None or len(each) < 2:
        return None
    return (
        f"no token request while a cached token is valid (run 2 of updater run, "
        f"auth=token, N={r['n']}): {each[1]}: {verdict(each[1] == 0)}"
    )
