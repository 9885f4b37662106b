"""The Prometheus textfile: its counters carry on from the file the last run wrote."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from updater.models.outcome import Outcome, Report
from updater.outputs import metrics

ODD = 'odd"unit\\name\n.service'  # every character the label escaping handles


def test_counters_carry_on_from_the_last_file_and_parse_as_prometheus(tmp_path):
    path = tmp_path / "updater.prom"
    for outcome in (Outcome.UPDATED, Outcome.UNCHANGED, Outcome.UPDATED):
        reports = [Report("a.service", "img", outcome), Report(ODD, "img", Outcome.FAILED)]
        counts = metrics.counted(path, reports)
        metrics.write(path, metrics.render(reports, counts, 0.1))
    assert {k: v for k, v in counts["a.service"].items() if v} == {"updated": 2, "unchanged": 1}
    assert {k: v for k, v in counts[ODD].items() if v} == {"failed": 3}
    samples = {
        (s.labels["unit"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(path.read_text())
        for s in family.samples
        if s.name == "updater_outcomes_total"
    }
    assert samples[("a.service", "updated")] == 2 and samples[(ODD, "failed")] == 3
    assert samples[("a.service", "rolled-back")] == 0


def test_a_missing_or_garbled_file_starts_the_counters_again(tmp_path):
    path = tmp_path / "updater.prom"
    assert metrics.counted(path, [Report("a", "i", Outcome.UPDATED)]) == {"a": {"updated": 1}}
    path.write_bytes(b'\xff\x00 garbage\nupdater_outcomes_total{unit="a"} x\n')
    assert metrics.counted(path, []) == {}
