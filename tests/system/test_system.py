"""System tier: `updater run` in a real systemd (systemd-nspawn), the tests' dockerd and registry.

App units are modelled on Flatcar's canonical container unit. Assertions are on the JSON
outcomes, exit codes, the image the container runs, InvocationIDs and the journal.
"""

from __future__ import annotations

import json

import pytest

from testbed.apps import UPDATER, configure, outcome, updater
from testbed.proxy import Proxy

pytestmark = pytest.mark.system


def test_updated_then_unchanged(machine, new_app):
    app = new_app()
    old = app.publish("v1")
    app.install()
    configure(machine, app)
    new = app.publish("v2")
    before = app.show("InvocationID")

    code, reports = updater(machine)
    assert code == 0
    assert outcome(reports, app) == {
        "unit": app.unit,
        "image": app.ref,
        "outcome": "updated",
        "from_digest": old,
        "to_digest": new,
        "error": None,
        "tag": "prod",
    }
    assert app.running_image() == app.images["v2"]
    after = app.show("InvocationID")
    assert after != before and app.show("ActiveState") == "active"

    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "unchanged"
    assert app.show("InvocationID") == after  # nothing restarted


def test_journal_lines_from_the_service(machine, new_app):
    app = new_app()
    app.publish("v1")
    app.install()
    configure(machine, app)
    new = app.publish("v2")
    machine.run("systemctl", "start", "updater.service", timeout=300)
    assert app.running_image() == app.images["v2"]
    journal = machine.run("journalctl", "-u", "updater.service", "-o", "json", "--no-pager").stdout
    lines = [json.loads(line) for line in journal.splitlines()]
    messages = {entry["MESSAGE"]: entry.get("PRIORITY") for entry in lines}
    assert messages[f"{app.unit}: updated to {new}"] == "6"
    assert messages["1 unit: 1 updated"] == "6"
    assert any(m.startswith(f"{app.unit}: pulled {new} (") for m in messages)
    assert not any(m.startswith("<") for m in messages)  # prefixes were understood, not shown


def test_image_that_cannot_start_is_rolled_back_and_not_retried(machine, new_app):
    app = new_app()
    app.publish("v1")
    app.install()
    configure(machine, app)
    bad = app.publish("broken", behaviour="broken")

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "rolled-back" and report["to_digest"] == bad
    assert app.running_image() == app.images["v1"]
    assert app.show("ActiveState") == "active"

    invocation = app.show("InvocationID")
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "skipped"
    assert bad in report["error"] and "failed at" in report["error"]
    assert app.show("InvocationID") == invocation

    good = app.publish("v3")
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "updated"
    assert outcome(reports, app)["to_digest"] == good
    assert app.running_image() == app.images["v3"]


def test_rollback_and_the_next_update_survive_the_start_limit(machine, new_app):
    """Restart=always with systemd's default 100 ms RestartSec: the broken image crash-loops
    into the start limit; the rollback, and a good digest pushed right after, still restart.

    Flatcar's unit has systemd's default limit (5 starts in 10 s), which a fast machine's loop
    reaches only sometimes; 3 starts in 60 s makes systemd refuse for certain on any machine.
    """
    app = new_app(settle=3)
    app.publish("v1")
    app.install("StartLimitBurst=3\nStartLimitIntervalSec=60", restart_sec=None)
    configure(machine, app)
    app.publish("broken", behaviour="broken")
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "rolled-back", report
    assert app.running_image() == app.images["v1"]
    assert app.show("ActiveState") == "active"

    good = app.publish("v3")
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "updated" and report["to_digest"] == good, report
    assert app.running_image() == app.images["v3"]
    assert app.show("ActiveState") == "active"


def test_failing_healthcheck_is_rolled_back(machine, new_app):
    app = new_app()
    app.publish("v1", healthcheck="true")
    app.install()
    configure(machine, app)
    app.publish("sick", healthcheck="false")
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "rolled-back"
    assert "HEALTHCHECK reports unhealthy" in report["error"]
    assert app.running_image() == app.images["v1"]


def test_crash_after_start_under_restart_always_is_rolled_back(machine, new_app):
    app = new_app(settle=5)
    app.publish("v1")
    app.install()
    configure(machine, app)
    app.publish("crashes", behaviour="crash-later")  # exits 2 s after starting
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "rolled-back", report
    assert app.running_image() == app.images["v1"]
    assert app.show("ActiveState") == "active"


def test_registry_killed_during_the_pull(machine, new_app, system_registry):
    registry = system_registry
    proxy = Proxy(registry.url)
    app = new_app()
    app.ref = f"{proxy.host}/acme/{app.name}:prod"  # the engine and the updater go through it
    try:
        app.publish("v1")
        app.install()
        configure(machine, app)
        app.publish("v2")
        invocation = app.show("InvocationID")

        def kill_on_blob(handler) -> bool:
            if "/blobs/" in handler.path:
                registry.kill()
                return True
            return False

        proxy.fault = kill_on_blob
        code, reports = updater(machine)
        report = outcome(reports, app)
        assert code == 1 and report["outcome"] == "failed" and "pulling" in report["error"]
        assert not registry.running
        assert app.show("InvocationID") == invocation
        assert app.running_image() == app.images["v1"]

        proxy.fault = None
        registry.restart()
        code, reports = updater(machine)
        assert code == 0 and outcome(reports, app)["outcome"] == "updated"
        assert app.running_image() == app.images["v2"]
    finally:
        proxy.stop()
        if not registry.running:
            registry.restart()


def test_container_behind_its_tag_restarts_without_pulling(machine, new_app, system_registry):
    registry = system_registry
    app = new_app()
    app.publish("v1")
    app.install()
    configure(machine, app)
    app.publish("v2", keep_local=True)  # pulled by hand: only the restart is missing
    registry.clear_log()
    code, reports = updater(machine)
    assert code == 0 and outcome(reports, app)["outcome"] == "updated"
    assert app.running_image() == app.images["v2"]
    # The containerd store: v1, pulled by tag, is confirmed by its digest once the tag moved.
    heads = 2 if app.dockerd.flavour.containerd_store else 1
    assert [(r.method, r.status) for r in registry.requests()] == [("HEAD", 200)] * heads


def test_sigterm_during_health_verification_converges(machine, new_app):
    app = new_app(settle=30)
    app.publish("v1")
    app.install()
    configure(machine, app)
    new = app.publish("v2")
    machine.run("systemctl", "start", "--no-block", "updater.service")
    machine.wait_for(lambda: app.running_image() == app.images["v2"], 60, "the restart onto v2")
    status = machine.run("systemctl", "show", "-P", "StatusText", "updater.service").stdout
    assert status.strip() == f"updating {app.unit}"  # STATUS= reached systemd (NotifyAccess=main)

    # A second run while this one holds the lock touches nothing.
    code, reports = updater(machine)
    assert code == 3 and reports is None

    machine.run("systemctl", "stop", "updater.service")  # SIGTERM while settling
    assert machine.run(
        "systemctl", "show", "-P", "ActiveState", "updater.service"
    ).stdout.strip() in (
        "inactive",
        "failed",
    )
    assert app.show("ActiveState") == "active"

    app.policy["settle"] = 2
    configure(machine, app)
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and report["outcome"] == "updated" and report["to_digest"] == new
    assert app.running_image() == app.images["v2"]
    state = json.loads(machine.read_file("/var/lib/updater/state.json"))
    assert "pending" not in state["units"].get(app.unit, {})


def test_unit_option_limits_the_run(machine, new_app):
    first, second = new_app(), new_app()
    for app in (first, second):
        app.publish("v1")
        app.install()
        app.publish("v2")
    configure(machine, first, second)
    untouched = second.show("InvocationID")
    code, reports = updater(machine, "--unit", first.unit)
    assert code == 0 and [r["unit"] for r in reports] == [first.unit]
    assert reports[0]["outcome"] == "updated"
    assert second.show("InvocationID") == untouched
    assert second.running_image() == second.images["v1"]


def test_superseded_images_beyond_keep_images_are_removed(machine, new_app, dockerd):
    app = new_app(keep_images=1)
    app.publish("v1")
    app.install()
    configure(machine, app)
    for seed in ("v2", "v3"):
        app.publish(seed)
        code, reports = updater(machine)
        assert code == 0 and outcome(reports, app)["outcome"] == "updated"

    def present(seed: str) -> bool:
        return dockerd.docker("image", "inspect", app.images[seed], check=False).returncode == 0

    assert app.running_image() == app.images["v3"]
    assert (present("v1"), present("v2"), present("v3")) == (False, True, True)


def test_corrupt_state_is_set_aside_and_the_run_goes_on(machine, new_app):
    app = new_app()
    app.publish("v1")
    app.install()
    configure(machine, app)
    app.publish("v2")
    machine.write_file("/var/lib/updater/state.json", '{"version": 1, "units": ', mode=0o600)
    done = machine.run(UPDATER, "run", "--json", check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    assert outcome(json.loads(done.stdout), app)["outcome"] == "updated"
    assert "state file /var/lib/updater/state.json is unreadable" in done.stderr
    listing = machine.run("ls", "/var/lib/updater").stdout.split()
    assert any(name.startswith("state.json.corrupt-") for name in listing)
    state = json.loads(machine.read_file("/var/lib/updater/state.json"))
    assert state["version"] == 1
    mode = machine.run("stat", "-c", "%a", "/var/lib/updater/state.json").stdout.strip()
    assert mode == "600"


def test_webhook_and_metrics_after_updated_rolled_back_and_failed(machine, new_app):
    from prometheus_client.parser import text_string_to_metric_families

    from testbed.receiver import Receiver

    hook = Receiver()
    app = new_app()
    app.publish("v1")
    app.install()
    extra = (
        f'[notify]\nwebhook = "{hook.url()}"\n'
        '[metrics]\npath = "/var/lib/prometheus/updater.prom"\n'
    )
    missing = f'[units."gone.service"]\nimage = "{app.ref.rsplit(":", 1)[0]}:no-such-tag"\ncontainer = "{app.name}"\n'

    def metrics() -> dict:
        text = machine.read_file("/var/lib/prometheus/updater.prom")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def outcomes(unit: str, outcome: str, values: dict) -> float:
        return values[("updater_outcomes_total", (("outcome", outcome), ("unit", unit)))]

    machine.write_file("/etc/updater/config.toml", app.config() + extra)
    new = app.publish("v2")
    assert updater(machine)[0] == 0
    values = metrics()
    assert values[("updater_last_run_success", ())] == 1
    info = ("updater_unit_info", (("digest", new), ("image", app.ref), ("unit", app.unit)))
    assert values[info] == 1
    assert outcomes(app.unit, "updated", values) == 1
    assert [(b["unit"], b["outcome"], b["to_digest"]) for b in hook.bodies] == [
        (app.unit, "updated", new)
    ]

    app.publish("broken", behaviour="broken")
    assert updater(machine)[0] == 1
    values = metrics()
    assert values[("updater_last_run_success", ())] == 0
    assert outcomes(app.unit, "rolled-back", values) == 1
    assert outcomes(app.unit, "updated", values) == 1  # kept across runs
    assert hook.bodies[-1]["outcome"] == "rolled-back"

    machine.write_file("/etc/updater/config.toml", app.config() + missing + extra)
    assert updater(machine)[0] == 1
    values = metrics()
    assert outcomes("gone.service", "failed", values) == 1
    assert outcomes(app.unit, "skipped", values) == 1
    assert [b["outcome"] for b in hook.bodies] == ["updated", "rolled-back", "failed"]
    hook.shutdown()
