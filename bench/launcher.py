"""Runs each measured command from a tiny process and reads its wait4() rusage.

Why not fork from the benchmark itself: a child's ru_maxrss counts the memory of the process it
was forked from (exec records the old address space's high-water mark), so a child of this
~50 MB Python process would never report less than ~50 MB. A tiny C launcher (compiled with cc
into the workspace) sets that floor at ~1 MB; without a C compiler `python3 -I -S` does the same
with a ~9 MB floor. `Launcher.floor_kb` is measured (the peak RSS reported for /bin/true).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

CHILD_TIMEOUT = 300.0  # seconds any one measured or set-up command may take

LAUNCHER_C = r"""
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t child;
static void on_alarm(int sig) { (void)sig; if (child > 0) kill(child, SIGKILL); }

/* launcher RESULT_FILE TIMEOUT_S CMD ARGS...: run CMD, write "wall user sys maxrss_kb code". */
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    child = fork();
    if (child < 0) return 3;
    if (child == 0) { execvp(argv[3], argv + 3); _exit(127); }
    signal(SIGALRM, on_alarm);
    alarm((unsigned)atoi(argv[2]));
    int status; struct rusage ru;
    while (wait4(child, &status, 0, &ru) < 0) if (errno != EINTR) return 4;
    clock_gettime(CLOCK_MONOTONIC, &b);
    double wall = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    FILE *f = fopen(argv[1], "w");
    if (!f) return 5;
    fprintf(f, "%.6f %ld.%06ld %ld.%06ld %ld %d\n", wall,
            (long)ru.ru_utime.tv_sec, (long)ru.ru_utime.tv_usec,
            (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec, ru.ru_maxrss, code);
    return fclose(f) == 0 ? 0 : 5;
}
"""

LAUNCHER_PY = """
import os, signal, sys, time
out, timeout, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
start = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
signal.signal(signal.SIGALRM, lambda *a: os.kill(pid, signal.SIGKILL))
signal.alarm(timeout)
_, status, ru = os.wait4(pid, 0)
wall = time.monotonic() - start
with open(out, "w") as f:
    f.write(f"{wall:.6f} {ru.ru_utime:.6f} {ru.ru_stime:.6f} {ru.ru_maxrss} "
            f"{os.waitstatus_to_exitcode(status)}\\n")
"""


@dataclass(frozen=True)
class Outcome:
    """One command's run: wall time, CPU, peak RSS, exit code and output."""

    wall: float
    user: float
    sys: float
    maxrss_kb: int
    exit_code: int
    stdout: str
    stderr: str

    @property
    def cpu(self) -> float:
        """User plus system time of the command and everything it waited for."""
        return self.user + self.sys


class Launcher:
    """Starts commands through the C launcher when `cc` builds it, else through Python."""

    def __init__(self, workspace: Path, env: Mapping[str, str]) -> None:
        self.dir = workspace / "launcher"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kind = "python3 -I -S"
        self.prefix = [sys.executable, "-I", "-S", "-c", LAUNCHER_PY]
        binary = self._compile()
        if binary is not None:
            self.kind, self.prefix = "C (cc)", [str(binary)]
        self._count = 0
        self._lock = threading.Lock()
        self.floor_kb = self.run(["true"], env).maxrss_kb

    def _compile(self) -> Path | None:
        """The C launcher, compiled into the workspace; None without a working compiler."""
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            return None
        source, binary = self.dir / "launcher.c", self.dir / "launcher"
        source.write_text(LAUNCHER_C)
        cmd = [cc, "-O2", "-o", str(binary), str(source)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return binary if done.returncode == 0 else None

    def _result_file(self) -> Path:
        with self._lock:
            self._count += 1
            return self.dir / f"result-{self._count}"

    def run(
        self, cmd: Sequence[str], env: Mapping[str, str], timeout: float = CHILD_TIMEOUT
    ) -> Outcome:
        """Run `cmd` to its end (killed after `timeout`) and read what the launcher saw."""
        result = self._result_file()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                [*self.prefix, str(result), str(int(timeout)), *cmd],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout + 30,
            )
            stdout, stderr = _read(out), _read(err)
        try:
            wall, user, sys_, maxrss, code = result.read_text().split()
            result.unlink()
        except (OSError, ValueError) as error:
            raise RuntimeError(
                f"launcher failed ({proc.returncode}) for {cmd}: {error}; {stderr[-500:]}"
            ) from None
        return Outcome(
            float(wall), float(user), float(sys_), int(maxrss), int(code), stdout, stderr
        )


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")
