"""Numbers for operators: a Prometheus textfile (node_exporter's textfile collector), written
atomically at the end of each run."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from updater.files import write_atomically
from updater.models.outcome import Outcome, Report, any_bad

log = logging.getLogger("updater")


def render(
    reports: Sequence[Report], counts: Mapping[str, Mapping[str, int]], duration: float
) -> str:
    """The textfile: last run, per-unit info and outcome counters kept across runs."""
    ok = not any_bad(reports)
    lines = [
        *_metric("updater_last_run_timestamp_seconds", "gauge", "When the last run ended."),
        f"updater_last_run_timestamp_seconds {time.time():.3f}",
        *_metric("updater_last_run_success", "gauge", "1 when no unit failed or rolled back."),
        f"updater_last_run_success {int(ok)}",
        *_metric("updater_last_run_duration_seconds", "gauge", "How long the last run took."),
        f"updater_last_run_duration_seconds {duration:.3f}",
        *_metric("updater_unit_info", "gauge", "The tag a unit follows and the digest it runs."),
    ]
    for r in reports:
        labels = _labels(unit=r.unit, image=r.image, digest=r.running_digest or "")
        lines.append(f"updater_unit_info{{{labels}}} 1")
    lines += _metric("updater_outcomes_total", "counter", "Run outcomes per unit, across runs.")
    for unit, per_outcome in sorted(counts.items()):
        for outcome in Outcome:
            labels = _labels(unit=unit, outcome=outcome.value)
            lines.append(f"updater_outcomes_total{{{labels}}} {per_outcome.get(outcome, 0)}")
    return "\n".join(lines) + "\n"


def counted(path: Path, reports: Sequence[Report]) -> dict[str, dict[str, int]]:
    """The outcome counters the last run wrote to `path`, with this run's outcomes added.

    The counters live in the textfile itself, so that an idle run writes nothing else.
    """
    counts: dict[str, dict[str, int]] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        text = ""  # a first run, or a file someone removed: counting starts again, as a reset
    for found in _SAMPLE.finditer(text):
        unit, outcome, value = _unescape(found[1]), found[2], int(found[3])
        counts.setdefault(unit, {})[outcome] = value
    for r in reports:
        per_unit = counts.setdefault(r.unit, {})
        per_unit[r.outcome.value] = per_unit.get(r.outcome.value, 0) + 1
    return counts


def write(path: Path, text: str) -> None:
    """Atomically, world-readable (node_exporter runs unprivileged); a failure is a warning."""
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
            path.parent.chmod(0o755)  # node_exporter must read it, whatever our UMask
        write_atomically(path, text.encode(), 0o644)
    except OSError as err:
        log.warning("cannot write metrics to %s: %s", path, err.strerror or err)


def _metric(name: str, kind: str, text: str) -> list[str]:
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]


_SAMPLE = re.compile(
    r'^updater_outcomes_total\{unit="((?:[^"\\]|\\.)*)",outcome="([a-z-]+)"\} ([0-9]{1,18})$', re.M
)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{key}="{escape(value)}"' for key, value in labels.items())
