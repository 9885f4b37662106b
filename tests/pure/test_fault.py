"""Pure decision logic: which failures count against a new image (updater.decisions.fault), from what
systemctl said (updater.systems.systemd.job_end) and what held around the restart; and what logind and
update_engine say of a coming reboot (updater.systems.reboot)."""

from __future__ import annotations

import pytest

from updater.commands.host import Host
from updater.commands.update import update
from updater.config import Policy, Unit
from updater.decisions.checked import Checked, Status
from updater.decisions.fault import Fault, Surroundings, blame, excuse
from updater.models.outcome import Outcome
from updater.models.reference import parse
from updater.systems.engine import Container
from updater.systems.reboot import scheduled_reason, staged_reason
from updater.systems.state import State
from updater.systems.state.records import Pending, Record
from updater.systems.systemd import JobEnd, job_end

OLD = "sha256:" + "1" * 64
NEW = "sha256:" + "2" * 64
UP = Surroundings()
STOPPING = Surroundings(stopping=True)
NO_ENGINE = Surroundings(engine="cannot reach the Docker engine at /run/docker.sock")

# What systemctl 252..257 writes when `systemctl restart app.service` fails, as systemd's
# src/shared/bus-wait-for-jobs.c and systemctl's start verb word it.
SAID = {
    "Job for app.service canceled.": JobEnd.CANCELED,
    "Warning! D-Bus connection terminated.": JobEnd.DISCONNECTED,
    "Failed to connect to bus: No such file or directory": JobEnd.DISCONNECTED,
    "Failed to wait for response: Connection reset by peer": JobEnd.DISCONNECTED,
    "Failed to restart app.service: Transaction for app.service/restart is destructive "
    "(poweroff.target has 'start' job queued, but 'stop' is included in transaction).": (
        JobEnd.REFUSED
    ),
    "Failed to restart app.service: Unit app.service is masked.": JobEnd.REFUSED,
    "A dependency job for app.service failed. See 'journalctl -xe' for details.": (
        JobEnd.DEPENDENCY
    ),
    "Queued job for app.service was garbage collected.": JobEnd.CANCELED,
    "Job for app.service timed out.": JobEnd.TIMED_OUT,
    "Job for app.service failed because the control process exited with error code.\n"
    'See "systemctl status app.service" and "journalctl -xeu app.service" for details.': (
        JobEnd.FAILED
    ),
    "Job for app.service failed because a timeout was exceeded.": JobEnd.FAILED,
    'Job for app.service failed.\nSee "systemctl status app.service" for details.': JobEnd.FAILED,
    "Assertion failed on job for app.service.": JobEnd.OTHER,
    "exit 1": JobEnd.OTHER,
}


@pytest.mark.parametrize("said", list(SAID))
def test_what_systemctl_said_is_read_as_how_the_job_ended(said):
    assert job_end(said) is SAID[said]


@pytest.mark.parametrize("ended", [JobEnd.FAILED, JobEnd.TIMED_OUT])
def test_the_service_failing_its_start_job_is_the_images_fault(ended):
    assert blame(ended, UP) is Fault.IMAGE


def test_a_proof_that_failed_on_a_host_that_stayed_up_is_the_images_fault():
    assert blame(None, UP) is Fault.IMAGE


@pytest.mark.parametrize(
    "ended", [JobEnd.CANCELED, JobEnd.DEPENDENCY, JobEnd.REFUSED, JobEnd.DISCONNECTED, JobEnd.OTHER]
)
def test_a_job_systemd_cancelled_refused_or_lost_is_not_the_images_fault(ended):
    assert blame(ended, UP) is Fault.HOST


@pytest.mark.parametrize("ended", [None, *JobEnd])
def test_nothing_is_the_images_fault_while_the_host_goes_down(ended):
    assert blame(ended, STOPPING) is Fault.HOST
    assert excuse(ended, STOPPING) == "the host is shutting down"


@pytest.mark.parametrize("ended", [None, *JobEnd])
def test_nothing_is_the_images_fault_when_the_engine_went_away(ended):
    assert blame(ended, NO_ENGINE) is Fault.HOST
    assert "the Docker engine went away while" in excuse(ended, NO_ENGINE)
    assert NO_ENGINE.engine in excuse(ended, NO_ENGINE)


def test_the_excuse_names_what_happened():
    assert excuse(JobEnd.CANCELED, UP) == "systemd cancelled the restart job"
    assert excuse(JobEnd.REFUSED, UP) == "systemd refused the restart job"
    assert excuse(None, NO_ENGINE).startswith("the Docker engine went away while verifying health")
    assert excuse(JobEnd.FAILED, NO_ENGINE).startswith(
        "the Docker engine went away while restarting"
    )


def test_a_scheduled_reboot_is_a_reason_not_to_start():
    # /run/systemd/shutdown/scheduled after `shutdown -r +5` (systemd 252)
    text = "USEC=1796579831853534\nWARN_WALL=1\nMODE=reboot\nUID=0\n"
    assert scheduled_reason(text) == (
        "a reboot is scheduled for 2026-12-06T17:57:11Z (shutdown -c cancels it)"
    )
    assert scheduled_reason("USEC=1\nMODE=poweroff\n").startswith("a poweroff is scheduled")
    assert scheduled_reason("MODE=dry-reboot\nUSEC=1\n") is None  # shutdown -k: a warning only
    assert scheduled_reason("") == "a shutdown is scheduled (shutdown -c cancels it)"


def test_an_os_update_waiting_for_its_reboot_is_a_reason_not_to_start():
    staged = (
        "LAST_CHECKED_TIME=1733480000\nPROGRESS=0.000000\n"
        "CURRENT_OP=UPDATE_STATUS_UPDATED_NEED_REBOOT\nNEW_VERSION=4230.2.0\nNEW_SIZE=456\n"
    )
    assert staged_reason(staged) == (
        "an OS update waits for its reboot into 4230.2.0 (UPDATE_STATUS_UPDATED_NEED_REBOOT)"
    )
    for op in ("UPDATE_STATUS_IDLE", "UPDATE_STATUS_DOWNLOADING", "UPDATE_STATUS_FINALIZING"):
        assert staged_reason(staged.replace("UPDATE_STATUS_UPDATED_NEED_REBOOT", op)) is None
    assert staged_reason("") is None


def test_an_update_in_flight_waits_for_its_container_after_a_boot(tmp_path):
    unit = Unit("app.service", parse("127.0.0.1:5000/app:prod"), "app", Policy(), tmp_path)
    pending = Pending("img-old", OLD, "img-new", NEW, "inv-1", "2026-12-06T18:00:00Z")
    state = State(tmp_path / "state.json", {unit.name: Record(pending=pending)})
    host = Host(engine=None, state=state)  # type: ignore[arg-type]  # a Leave never asks it

    # The first run after a boot may come before the unit's container is up: not a reason to
    # forget the update, which the run after proves.
    down = Checked(unit, Status.NOT_RUNNING, None, NEW)
    assert update(down, host).outcome is Outcome.SKIPPED
    assert state.record(unit.name).pending == pending

    # Up on the old image (the new one never ran): the update in flight is over.
    old = Container("c1", "img-old", True, "running", "t", 0, None)
    current = Checked(unit, Status.CURRENT, OLD, OLD, container=old)
    assert update(current, host).outcome is Outcome.UNCHANGED
    assert state.record(unit.name).pending is None
