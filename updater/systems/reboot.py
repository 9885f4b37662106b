"""Reboots, as logind and Flatcar's update_engine see them: whether one is coming (no update
starts into it), and a delay inhibitor held while a restart is proven (a reboot asked through
logind waits for the proof, up to logind's InhibitDelayMaxSec)."""

from __future__ import annotations

import logging
import select
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger("updater")

# Where logind keeps a shutdown scheduled with `shutdown +N` (ScheduledShutdown over D-Bus), so
# that it survives logind's restart; gone with the boot (/run is a tmpfs).
SCHEDULED = Path("/run/systemd/shutdown/scheduled")
UPDATE_ENGINE_CLIENT = "update_engine_client"  # Flatcar's
NEED_REBOOT = "UPDATE_STATUS_UPDATED_NEED_REBOOT"
ASK_TIMEOUT = 10  # s for update_engine_client, and for the inhibitor to be taken or given back
# The inhibitor's holder: says it holds the lock, then lives until its stdin ends, which is
# when the block ends or when the run dies, however it dies.
_HOLDER = ("sh", "-c", "echo held && exec cat >/dev/null")


def coming(scheduled: Path = SCHEDULED) -> str | None:
    """Why no update should start now (a shutdown or reboot is scheduled, or Flatcar staged an
    OS update that waits for its reboot); None when no reboot is known to be coming."""
    return _scheduled(scheduled) or _staged()


def _scheduled(path: Path) -> str | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        log.warning("cannot read %s (%s); not knowing of a scheduled shutdown", path, err.strerror)
        return None
    return scheduled_reason(text)


def scheduled_reason(text: str) -> str | None:
    """The reason a scheduled shutdown (logind's file: USEC=, MODE=) gives; None for a dry run
    (`shutdown -k`: a warning only)."""
    fields = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    mode = fields.get("MODE", "shutdown")
    if mode.startswith("dry-"):
        return None
    usec = fields.get("USEC", "")
    when = ""
    if usec.isdigit():
        at = datetime.fromtimestamp(int(usec) / 1e6, UTC)
        when = f" for {at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    return f"a {mode} is scheduled{when} (shutdown -c cancels it)"


def _staged() -> str | None:
    """Flatcar: update_engine has an OS update in place that waits for its reboot."""
    client = shutil.which(UPDATE_ENGINE_CLIENT)
    if client is None:
        return None
    try:
        done = subprocess.run(
            [client, "-status"], capture_output=True, text=True, timeout=ASK_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("asking update_engine whether a reboot is pending: %s", err)
        return None
    return staged_reason(done.stdout)


def staged_reason(status: str) -> str | None:
    """The reason `update_engine_client -status` output gives, when a reboot is pending."""
    fields = dict(line.partition("=")[::2] for line in status.splitlines() if "=" in line)
    if fields.get("CURRENT_OP", "").strip() != NEED_REBOOT:
        return None
    version = fields.get("NEW_VERSION", "").strip()
    into = f" into {version}" if version and version != "0.0.0" else ""
    return f"an OS update waits for its reboot{into} ({NEED_REBOOT})"


@contextmanager
def inhibited(why: str) -> Iterator[None]:
    """Hold a logind delay inhibitor for shutdown while the block runs. Without logind (or
    systemd-inhibit) the block runs all the same: it only makes a reboot wait."""
    holder = _hold(why)
    try:
        yield
    finally:
        if holder is not None:
            _release(holder)


def _hold(why: str) -> subprocess.Popen[str] | None:
    """`systemd-inhibit` holding the lock for a child that lives as long as our pipe to it."""
    command = ["systemd-inhibit", "--what=shutdown", "--mode=delay", "--who=updater"]
    try:
        child = subprocess.Popen(
            [*command, f"--why={why}", *_HOLDER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as err:
        log.warning("no shutdown inhibitor (%s); a reboot will not wait for the proof", err)
        return None
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], ASK_TIMEOUT)
    if ready and child.stdout.readline().strip() == "held":
        return child
    said = _release(child)
    log.warning("no shutdown inhibitor (%s); a reboot will not wait for the proof", said)
    return None


def _release(child: subprocess.Popen[str]) -> str:
    """End the holder (the lock goes with it); what it said on stderr."""
    try:
        _, said = child.communicate(timeout=ASK_TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        _, said = child.communicate()
    return (said or "").strip() or f"exit {child.returncode}"
