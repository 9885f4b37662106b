"""Engine tier: notifications across real runs against a real registry that goes away and comes
back: told once when a unit starts failing, once when it recovers, and a ping every run."""

from __future__ import annotations

from testbed.receiver import Receiver


def test_an_outage_is_told_once_its_end_once_and_every_run_pings(cli, app, registry):
    hook, pings = Receiver(), Receiver()
    app.publish("v1")
    app.start()
    cli.unit("app.service", app.ref, container=app.name)
    cli.notify(webhook=[hook.url()], ping=pings.url("/ping/abc"))

    outcomes = [cli("run") for _ in range(2)]
    registry.stop()
    outcomes += [cli("run") for _ in range(4)]
    registry.start()
    outcomes += [cli("run") for _ in range(2)]

    assert [(code, r["outcome"]) for code, [r] in outcomes] == [
        (0, "unchanged"),
        (0, "unchanged"),
        *[(1, "failed")] * 4,
        (0, "unchanged"),
        (0, "unchanged"),
    ]
    assert [(b["event"], b["outcome"], b["unit"]) for b in hook.bodies] == [
        ("failed", "failed", "app.service"),
        ("recovered", "unchanged", "app.service"),
    ]
    assert hook.bodies[1]["failing_since"] == hook.bodies[0]["failing_since"]
    ok, fail = ("GET", "/ping/abc"), ("GET", "/ping/abc/fail")
    assert pings.requests == [ok, ok, fail, fail, fail, fail, ok, ok]
