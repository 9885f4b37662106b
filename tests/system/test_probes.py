"""System tier: a unit's own health proof and its veto before the restart (issue 28, points 3
and 4), in a real systemd with the tests' dockerd and registry: `health_url` asks the
container's port from the host, `health_command` runs in the host (here: the machine), and a
`pre_update` hook that fails leaves the service as it was.

Assertions are on the JSON report, the image the container runs, the unit's InvocationID and
what the hook and the notify command saw.
"""

from __future__ import annotations

import json
import socket

import pytest

from testbed.apps import configure, outcome, updater

pytestmark = pytest.mark.system


def _free_port() -> int:
    """A loopback port nothing listens on now; the machine and the engine share the host's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_health_url_refused_is_rolled_back_and_a_2xx_is_updated(machine, new_app):
    port = _free_port()
    app = new_app(health_url=f"http://127.0.0.1:{port}/seed", health_timeout=6, settle=2)
    app.publish("v1", behaviour="http")
    app.install(run_options=f"--network host -e PORT={port}")
    configure(machine, app)
    deaf = app.publish("deaf")  # runs and stays up, but nothing answers on the port

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "rolled-back", report
    assert report["to_digest"] == deaf
    assert "not healthy within 6 s" in report["error"]
    assert f"health probe: GET http://127.0.0.1:{port}/seed: connection refused" in report["error"]
    assert app.running_image() == app.images["v1"]  # and v1 passed the probe again

    good = app.publish("v2", behaviour="http")
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and (report["outcome"], report["to_digest"]) == ("updated", good), report
    assert app.running_image() == app.images["v2"]


def test_health_command_failing_is_rolled_back_with_its_last_lines(machine, new_app):
    app = new_app(health_command=["/usr/local/bin/check-app", "--quick"], settle=2)
    # A check of what the app runs, through the engine as an operator's script would.
    machine.write_file(
        "/usr/local/bin/check-app",
        f"""#!/bin/sh
seed=$(/usr/local/bin/docker exec {app.name} cat /seed) || exit 1
echo "checked $1"
case "$seed" in *-sick) echo "shop says: $seed is sick"; exit 2;; esac
""",
        mode=0o755,
    )
    app.publish("v1")
    app.install()
    configure(machine, app)
    app.publish("sick")

    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "rolled-back", report
    assert (
        f"health_command exited 2: checked --quick / shop says: {app.name}-sick is sick"
        in report["error"]
    )
    assert app.running_image() == app.images["v1"]


HOOK = "/usr/local/bin/backup-db"
SEEN = "/var/tmp/backup-db.env"
TOLD = "/var/tmp/told"


def test_pre_update_vetoes_the_restart_until_it_succeeds(machine, new_app):
    app = new_app(pre_update=[HOOK, "--all"], hook_timeout=3)
    machine.write_file(
        HOOK,
        f'#!/bin/sh\nenv | grep ^UPDATER_ | sort >> {SEEN}\necho "dumping"\n'
        'echo "backup failed: disk full" >&2\nexit 1\n',
        mode=0o755,
    )
    machine.write_file(TOLD, "")
    machine.write_file(f"{TOLD}.sh", f'#!/bin/sh\necho "$UPDATER_EVENT" >> {TOLD}\n', mode=0o755)
    machine.run("rm", "-f", SEEN)
    old = app.publish("v1")
    app.install()
    machine.write_file(
        "/etc/updater/config.toml", f'[notify]\ncommand = "{TOLD}.sh"\n' + app.config()
    )
    new = app.publish("v2")
    invocation = app.show("InvocationID")

    # Refused twice: nothing restarted, the digest not marked, told once.
    for _ in range(2):
        code, reports = updater(machine)
        report = outcome(reports, app)
        assert code == 1 and report["outcome"] == "failed", report
        assert report["error"] == (
            f"pre_update {HOOK} exited 1: backup failed: disk full; nothing restarted"
        )
        assert app.running_image() == app.images["v1"]
        assert app.show("InvocationID") == invocation
    seen = f"UPDATER_FROM={old}\nUPDATER_TO={new}\nUPDATER_UNIT={app.unit}\n"
    assert machine.read_file(SEEN) == seen * 2
    assert machine.read_file(TOLD).split() == ["failed"]
    state = json.loads(machine.read_file("/var/lib/updater/state.json"))
    assert not state["units"][app.unit].get("failed"), state  # no digest marked failed
    assert not state["units"][app.unit].get("pending"), state

    # A hook that hangs is killed at hook_timeout, and vetoes as well.
    machine.write_file(HOOK, "#!/bin/sh\necho dumping\nsleep 60\n", mode=0o755)
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 1 and report["outcome"] == "failed", report
    assert report["error"].startswith(f"pre_update {HOOK} did not finish within 3 s: dumping;")
    assert app.show("InvocationID") == invocation

    # The hook succeeds: the update goes on, and the recovery is told.
    machine.write_file(HOOK, "#!/bin/sh\necho dumped\n", mode=0o755)
    code, reports = updater(machine)
    report = outcome(reports, app)
    assert code == 0 and (report["outcome"], report["to_digest"]) == ("updated", new), report
    assert app.running_image() == app.images["v2"]
    assert app.show("InvocationID") != invocation
    assert machine.read_file(TOLD).split() == ["failed", "recovered"]
