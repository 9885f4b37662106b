"""A private mount namespace: /run, /var/lib/containers, /etc/containers and /var/cache/updater
of our own."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

from bench.dbus import systemd_bus_reachable

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def _encoded(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2), raising OSError with what was mounted where."""
    args = (_encoded(source), _encoded(target), _encoded(fstype), flags, _encoded(data))
    if _libc.mount(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def umount(target: str) -> None:
    """Detach a mount; errors are ignored (the namespace dies with the process anyway)."""
    _libc.umount2(target.encode(), MNT_DETACH)


def mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below `prefix`, deepest first."""
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == str(prefix) or point.startswith(f"{prefix}/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


class Namespace:
    """This process in a private mount namespace, so nothing Podman writes reaches the host."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.real_systemd = False
        self.entered = False
        self.created_dirs: list[Path] = []
        self.etc_containers = workspace / "podman-etc"

    def enter(self) -> None:
        """Unshare, then a private /run, /var/lib/containers and /etc/containers."""
        self._unshare()
        self._private_run()
        varlib = self.workspace / "podman-varlib"  # blob-info-cache-v1.boltdb lands here
        varlib.mkdir(parents=True)
        self._bind(varlib, Path("/var/lib/containers"))
        if Path("/etc/containers").is_dir():
            shutil.copytree(
                "/etc/containers",
                self.etc_containers,
                symlinks=True,
                ignore=shutil.ignore_patterns("networks"),
            )
        self.etc_containers.mkdir(exist_ok=True)
        self._bind(self.etc_containers, Path("/etc/containers"))
        cache = self.workspace / "updater-cache"  # the installed launcher's bytecode
        cache.mkdir()
        self._bind(cache, Path("/var/cache/updater"))

    def _unshare(self) -> None:
        # Threads would stay in the old namespace: unshare affects the calling thread only.
        if threading.active_count() != 1:
            raise RuntimeError("enter the mount namespace before starting threads")
        if _libc.unshare(CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
        self.entered = True
        mount("none", "/", None, MS_REC | MS_PRIVATE, None)  # nothing propagates to the host

    def _private_run(self) -> None:
        """A tmpfs on /run (runc's state, libpod's tmpdir, the dummy bus), systemd's kept."""
        self.real_systemd = systemd_bus_reachable()
        keep = self.workspace / "host-run-systemd"
        if self.real_systemd:  # where a real systemd answers, keep it visible
            keep.mkdir(parents=True)
            mount("/run/systemd", str(keep), None, MS_BIND, None)
        mount("tmpfs", "/run", "tmpfs", 0, "mode=0755")
        if self.real_systemd:
            Path("/run/systemd").mkdir()
            mount(str(keep), "/run/systemd", None, MS_BIND, None)

    def _bind(self, source: Path, target: Path) -> None:
        if not target.exists():
            target.mkdir(parents=True)
            self.created_dirs.append(target)
        mount(str(source), str(target), None, MS_BIND, None)

    def write_registries_conf(self, hosts: Sequence[str]) -> None:
        """Only our loopback registries, plain HTTP (what `--tls-verify=false` also says)."""
        lines = ["unqualified-search-registries = []", ""]
        for host in hosts:
            lines += ["[[registry]]", f'location = "{host}"', "insecure = true", ""]
        (self.etc_containers / "registries.conf").write_text("\n".join(lines))
        shutil.rmtree(self.etc_containers / "registries.conf.d", ignore_errors=True)

    def leave(self) -> None:
        """Unmount the host paths we covered and remove the mount points we created."""
        if not self.entered:
            return
        for target in ("/var/cache/updater", "/etc/containers", "/var/lib/containers"):
            umount(target)
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()
