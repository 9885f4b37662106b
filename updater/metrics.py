"""Numbers for operators: a Prometheus textfile (node_exporter's textfile collector), written
atomically at the end of each run."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from updater.files import write_atomically
from updater.outcome import Outcome, Report, any_bad

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


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{key}="{escape(value)}"' for key, value in labels.items())
