"""A unit's own health proof and its veto before the restart (issue 28, points 3 and 4): the keys
as the run reads them, the decision over a fake probe, and the probe itself against a loopback
HTTP server and real commands."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.pure.test_config import write
from tests.pure.test_decisions import Clock, container, expectation, unit_state
from updater.config import Fleet, Policy, load
from updater.decisions.health import Observation, verify
from updater.errors import ConfigError
from updater.models.outcome import Outcome, Report
from updater.outputs.alerts import alert
from updater.systems import probe

pytestmark = pytest.mark.pure

UNIT = '[units."app.service"]\nimage = "ghcr.io/acme/app:prod"\n'


@pytest.fixture
def main_file(tmp_path):
    return tmp_path / "config.toml"


# The keys.


def test_probe_and_hook_keys_in_defaults_and_a_unit_that_opts_out(main_file):
    write(
        main_file,
        "[defaults]\n"
        'health_url = "http://127.0.0.1:8080/healthz"\n'
        'pre_update = ["/usr/local/bin/backup-db", "--all"]\n'
        "hook_timeout = 30\n" + UNIT + 'health_command = ["/usr/local/bin/check-shop", "--quick"]\n'
        '[units."b.service"]\nimage = "b"\nhealth_url = ""\npre_update = []\n',
    )
    a, b = load(main_file).units
    assert a.policy.health_url == "http://127.0.0.1:8080/healthz"
    assert a.policy.health_command == ("/usr/local/bin/check-shop", "--quick")
    assert a.policy.pre_update == ("/usr/local/bin/backup-db", "--all")
    assert a.policy.hook_timeout == 30
    assert (b.policy.health_url, b.policy.health_command, b.policy.pre_update) == ("", (), ())
    assert Policy().hook_timeout == 300 and not Policy().pre_update


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'health_url = "ftp://host/x"\n',
            "config.toml: units.\"app.service\".health_url: 'ftp://host/x' is not an http(s) URL "
            'like "http://127.0.0.1:8080/healthz"',
        ),
        ('health_url = "http://"\n', "health_url: 'http://' is not an http(s) URL"),
        ('health_url = "http://h:99999/"\n', "health_url: 'http://h:99999/' is not an http(s)"),
        ('health_url = "http://h/a b"\n', "health_url: 'http://h/a b' is not an http(s) URL"),
        ("health_url = 8080\n", "health_url: 8080 is not an http(s) URL"),
        (
            'health_command = "/bin/check --quick"\n',
            "units.\"app.service\".health_command: '/bin/check --quick' is not a command as a "
            'list like ["/usr/local/bin/check", "--quick"]',
        ),
        (
            'health_command = ["check-shop"]\n',
            "units.\"app.service\".health_command: 'check-shop' must be an absolute path",
        ),
        ("pre_update = [1]\n", 'units."app.service".pre_update: [1] is not a command as a list'),
        (
            'pre_update = ["./backup"]\n',
            "units.\"app.service\".pre_update: './backup' must be an absolute path",
        ),
        (
            "hook_timeout = 0\n",
            'units."app.service".hook_timeout: 0 is not a number of seconds > 0',
        ),
        ('hook_timeout = "5m"\n', "hook_timeout: '5m' is not a number of seconds > 0"),
    ],
)
def test_bad_probe_and_hook_keys_name_file_and_key(main_file, text, message):
    write(main_file, UNIT + text)
    with pytest.raises(ConfigError) as err:
        load(main_file)
    assert message in str(err.value)
    assert str(main_file) in str(err.value)


def test_a_fleet_slot_outlasts_the_hook():
    fleet = Fleet(etcd=("http://127.0.0.1:2379",), group="g", host="h")
    plain = Policy(health_timeout=60, settle=5)
    assert fleet.lease_for(plain) == 155
    hooked = Policy(health_timeout=60, settle=5, pre_update=("/bin/true",), hook_timeout=300)
    assert fleet.lease_for(hooked) == 455


def test_a_lease_of_your_own_must_cover_the_hook_too(main_file):
    fleet = '[fleet]\netcd = ["http://127.0.0.1:2379"]\ngroup = "web"\nhost = "h1"\n'
    unit = '[units."a.service"]\nimage = "a"\nhealth_timeout = 10\nsettle = 2\n'
    hooked = unit + 'pre_update = ["/bin/true"]\nhook_timeout = 30\n'
    write(main_file, fleet + "lease_ttl = 40\n" + hooked)
    with pytest.raises(ConfigError) as err:
        load(main_file)
    assert str(err.value) == (
        f"{main_file}: fleet.lease_ttl: 40 s is shorter than a.service's restart and proof "
        "(2 x health_timeout + settle + hook_timeout = 52 s)"
    )
    write(main_file, fleet + "lease_ttl = 52\n" + hooked)
    assert load(main_file).fleet.lease_ttl == 52


# The decision, over a fake probe.


def probe_failing_until(until: float, clock: Clock, asked: list[float]):
    def check():
        asked.append(clock.now)
        return None if clock.now >= until else "GET http://x/healthz: answered 503"

    return check


def up(now):
    return Observation(unit_state(), {"app": container() if now >= 1 else None})


def test_the_probe_is_asked_only_once_the_unit_is_up_and_at_every_settling_observation():
    clock, asked = Clock(), []
    check = probe_failing_until(3, clock, asked)
    verdict = verify(expectation(), lambda: up(clock.now), clock, clock.sleep, check)
    assert verdict.healthy
    assert asked[0] >= 1  # never before the container runs
    settling = [t for t in asked if t >= 3]
    assert len(settling) >= 6  # every observation of the 3 s settle, twice a second
    assert 6.0 <= clock.now < 6.6


def test_a_probe_that_never_passes_is_unhealthy_at_the_timeout_saying_why():
    clock, asked = Clock(), []
    check = probe_failing_until(1e9, clock, asked)
    verdict = verify(expectation(timeout=4), lambda: up(clock.now), clock, clock.sleep, check)
    assert not verdict.healthy
    assert verdict.reason.startswith("not healthy within 4 s: unit active/running, container")
    assert verdict.reason.endswith("; health probe: GET http://x/healthz: answered 503")
    assert 4 <= clock.now < 4.6


def test_a_probe_failing_once_while_settling_is_unhealthy():
    clock = Clock()

    def check():
        return "health_command exited 2: db down" if 2.0 <= clock.now < 2.5 else None

    verdict = verify(expectation(), lambda: up(clock.now), clock, clock.sleep, check)
    assert (verdict.healthy, verdict.reason) == (
        False,
        "health probe failed while settling: health_command exited 2: db down",
    )


def test_without_a_probe_the_proof_is_as_before():
    clock = Clock()
    verdict = verify(expectation(), lambda: up(clock.now), clock, clock.sleep)
    assert verdict.healthy and 4.0 <= clock.now < 4.6


# A veto that persists is told once, then reminded, then its end: as any failure.


def test_a_veto_that_persists_is_told_once_then_reminded_then_its_end():
    veto = "pre_update /usr/local/bin/backup-db exited 1: disk full; nothing restarted"
    t0, kinds, failing = datetime(2026, 12, 6, tzinfo=UTC), [], None
    for hour in range(8):
        report = Report("app.service", "ghcr.io/acme/app:prod", Outcome.FAILED, error=veto)
        event, failing = alert(report, failing, t0 + timedelta(hours=hour), timedelta(hours=6))
        kinds.append(event.kind if event else None)
    report = Report("app.service", "ghcr.io/acme/app:prod", Outcome.UPDATED)
    event, failing = alert(report, failing, t0 + timedelta(hours=8), timedelta(hours=6))
    assert kinds == ["failed", None, None, None, None, None, "still-failing", None]
    assert event and event.kind == "recovered" and failing is None


# The probe itself: a real HTTP server on loopback, real commands.


class Health(BaseHTTPRequestHandler):
    statuses: dict[str, int] = {"/healthz": 200, "/sick": 500, "/moved": 302, "/slow": 200}

    def do_GET(self):
        if self.path == "/slow":
            threading.Event().wait(3)
        self.send_response(self.statuses.get(self.path.split("?")[0], 404))
        self.send_header("Content-Length", "2")
        self.send_header("Location", "/healthz")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError):  # /slow: the probe gave up and hung up
            self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_get_passes_only_on_a_2xx(server):
    assert probe.get(f"{server}/healthz?full=1", 5) is None
    assert (
        probe.get(f"{server}/sick", 5) == f"GET {server}/sick: answered 500 Internal Server Error"
    )
    assert probe.get(f"{server}/moved", 5) == f"GET {server}/moved: answered 302 Found"
    assert probe.get(f"{server}/slow", 0.5) == f"GET {server}/slow: no answer within 0.5 s"


def test_get_of_a_port_nothing_listens_on_is_refused(server):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused
        url = f"http://127.0.0.1:{port}/healthz"
        assert probe.get(url, 5) == f"GET {url}: connection refused"


def test_run_keeps_the_last_lines_and_passes_the_environment(tmp_path):
    script = "echo one; echo two >&2; echo; echo three; echo $UPDATER_TO; exit 3"
    ran = probe.run(("/bin/sh", "-c", script), 5, {"UPDATER_TO": "sha256:2"}, lines=2)
    assert (ran.ok, ran.status, ran.tail) == (False, 3, "three / sha256:2")
    assert ran.describe() == "exited 3: three / sha256:2"
    assert probe.run(("/bin/true",), 5).ok
    assert probe.run(("/bin/sh", "-c", "kill -9 $$"), 5).describe() == (
        "was killed by signal 9 (no output)"
    )
    missing = probe.run((str(tmp_path / "nothing"),), 5)
    assert missing.describe().startswith("exited 127: cannot run ") and not missing.ok


def test_run_kills_a_command_and_what_it_started_at_the_timeout():
    # The shell waits on a sleep that holds the output pipe: both must die, or this hangs.
    started = datetime.now(UTC)
    ran = probe.run(("/bin/sh", "-c", "echo started; sleep 60; echo never"), 1)
    assert (datetime.now(UTC) - started).total_seconds() < 10
    assert (ran.ok, ran.status) == (False, None)
    assert ran.describe() == "did not finish within 1 s: started"
