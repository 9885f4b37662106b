"""Podman 4.3.1, Debian's: installed when missing, one storage root per scenario."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.launcher import CHILD_TIMEOUT
from bench.log import log

# `podman run` makes runc set RLIMIT_NOFILE 1048576 and RLIMIT_NPROC 32768, which this sandbox
# refuses with EPERM; they do not matter to auto-update.
RUN_FLAGS = (
    "--network", "none",
    "--ulimit", "nofile=1024:1024",
    "--ulimit", "nproc=1024:1024",
    "--tls-verify=false",
)  # fmt: skip


def ensure_podman() -> None:
    """`apt-get install podman` (Debian's 4.3.1) when it is missing."""
    if shutil.which("podman"):
        return
    log("podman missing: apt-get install -y podman (Debian's 4.3.1)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "podman"],
        check=True,
        env=env,
        timeout=900,
        stdout=subprocess.DEVNULL,
    )


@dataclass(frozen=True)
class PodmanRoot:
    """Podman's storage for one scenario, and the commands that use it."""

    name: str
    root: Path

    def command(self, *args: str) -> list[str]:
        """`podman` with this root; runroot and tmpdir in the namespace's private /run."""
        # Podman refuses a runroot longer than 50 characters: it cannot live in the workspace.
        run = Path("/run/updater-bench") / self.name
        return [
            "podman",
            "--root", str(self.root / "root"),
            "--runroot", str(run / "runroot"),
            "--tmpdir", str(run / "tmp"),
            *args,
        ]  # fmt: skip

    def dry_run(self, auth_file: Path) -> list[str]:
        """The measured command."""
        return self.command("auto-update", "--dry-run", "--authfile", str(auth_file))

    def run_container(self, name: str, ref: str, env: Mapping[str, str]) -> None:
        """`podman run -d` an auto-updated container of `ref`, retried twice."""
        cmd = self.command(
            "run", "-d", "--name", name,
            "--label", "io.containers.autoupdate=registry",
            "--label", f"PODMAN_SYSTEMD_UNIT={name}.service",
            *RUN_FLAGS, ref,
        )  # fmt: skip
        for attempt in range(3):
            done = self._run(cmd, env)
            if done.returncode == 0:
                return
            self._run(self.command("rm", "-f", name), env)
            time.sleep(0.5 * (attempt + 1))
        raise RuntimeError(f"podman run {name}: {done.stderr.strip()[-800:]}")

    def remove_all(self, env: Mapping[str, str]) -> None:
        """Remove every container of this root, at once."""
        if (self.root / "root").exists():
            self._run(self.command("rm", "-f", "-a", "-t", "0"), env)

    @staticmethod
    def _run(cmd: list[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cmd, env=dict(env), capture_output=True, text=True, timeout=CHILD_TIMEOUT
        )


def dry_run_sane(out: str, n: int) -> tuple[bool, str]:
    """Did `auto-update --dry-run` list n containers, none to update?"""
    rows = [line for line in out.splitlines() if ".service" in line]
    updated = [line for line in rows if not line.rstrip().endswith("false")]
    note = f"{len(rows)}/{n} containers, {len(updated)} not false"
    return len(rows) == n and not updated, note
