"""A command under `strace -f`: which calls it made, and which files it wrote.

"Written" is what was opened to write (O_WRONLY, O_TRUNC, O_APPEND, O_EXCL) or renamed into
place; a file opened O_RDWR alone (a lock file, created if missing) is listed apart, as
opening it so writes nothing.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TRACED = "trace=fsync,fdatasync,connect,execve,rename,renameat,renameat2,open,openat"
_CALL = re.compile(r"^(?:\d+ +)?(\w+)\(")  # a call's first line (not "<... resumed>")
# open/openat: the path, the flags, the result (-1: it failed, nothing was opened).
_OPENED = re.compile(r'^(?:\d+ +)?(?:openat\(\w+, |open\()"([^"]*)", ([A-Z_|]+).* = (-?\d+)')
_RENAMED = re.compile(r'^(?:\d+ +)?rename(?:at2?)?\((?:\w+, )?"[^"]*", (?:\w+, )?"([^"]*)".* = 0')
_WRITE_FLAGS = {"O_WRONLY", "O_TRUNC", "O_APPEND", "O_EXCL"}


@dataclass(frozen=True)
class Trace:
    exit_code: int
    counts: Mapping[str, int]  # calls by name
    written: tuple[str, ...]  # sorted, without /dev/*
    read_write: tuple[str, ...]  # opened O_RDWR without a write flag

    @property
    def fsyncs(self) -> int:
        return self.counts.get("fsync", 0) + self.counts.get("fdatasync", 0)

    @property
    def renames(self) -> int:
        return sum(n for name, n in self.counts.items() if name.startswith("rename"))


def trace(cmd: Sequence[str], env: Mapping[str, str], log: Path, timeout: float = 300) -> Trace:
    """Run `cmd` under strace, its trace in `log`."""
    strace = ["strace", "-f", "-qq", "-o", str(log), "-e", TRACED, *cmd]
    done = subprocess.run(strace, env=dict(env), capture_output=True, timeout=timeout)
    return parse(done.returncode, log.read_text() if log.exists() else "")


def parse(exit_code: int, text: str) -> Trace:
    counts: Counter[str] = Counter()
    written: set[str] = set()
    read_write: set[str] = set()
    for line in text.splitlines():
        call = _CALL.match(line)
        if call:
            counts[call[1]] += 1
        opened, renamed = _OPENED.match(line), _RENAMED.match(line)
        if opened and int(opened[3]) >= 0:
            flags = set(opened[2].split("|"))
            if flags & _WRITE_FLAGS:
                written.add(opened[1])
            elif "O_RDWR" in flags:
                read_write.add(opened[1])
        if renamed:
            written.add(renamed[1])
    return Trace(exit_code, dict(counts), _files(written), _files(read_write))


def _files(paths: set[str]) -> tuple[str, ...]:
    return tuple(sorted(p for p in paths if not p.startswith("/dev/")))
