#!/usr/bin/env python3
"""Benchmark: `updater check` and an idle `updater run` against Podman's `auto-update --dry-run`.

Run as root, from the repository root, on a machine where `sudo tests/run` has installed the
real components (dockerd from docker.io, Debian's docker-registry, busybox-static):

    python3 bench/bench.py [--n 10,20,50,200] [--latency-ms 50] [--repeat 5]

Podman (Debian's 4.3.1) is needed too: when `podman` is missing, the benchmark runs
`apt-get update && apt-get install -y podman` itself. Everything else it starts privately and
removes again: a docker-registry and a dockerd (tests/testbed), a delaying TCP proxy, a dummy
systemd D-Bus endpoint, Podman's storage, every container. All traffic stays on 127.0.0.1.

How it isolates Podman (see bench/README.md): the benchmark process first moves itself into a
private mount namespace (unshare(CLONE_NEWNS), propagation private) with a fresh tmpfs on /run
and temporary directories bound over /var/lib/containers and /etc/containers, so nothing Podman
writes (runc state, libpod tmpdir, blob-info cache, network configs) reaches the host. Podman
4.3.1's auto-update connects to systemd's private bus (/run/systemd/private) even in dry-run;
this host has no systemd as PID 1, so the benchmark serves a dummy endpoint there that speaks
just enough D-Bus (SASL EXTERNAL, and an empty reply to the one AddMatch call Podman makes).
`podman run` also needs `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024` here: this
sandbox refuses runc's default rlimits (1048576 files, 32768 processes) with EPERM.

Results: a table per N and latency on stdout, and the same as JSON in bench/results.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results.json"
UPDATER_CHECK = "updater check"
UPDATER_RUN = "updater run (idle)"
PODMAN = "podman auto-update --dry-run"
TOOLS = (UPDATER_CHECK, UPDATER_RUN, PODMAN)
TOKEN_USER, TOKEN_PASSWORD = "alice", "s3cret-pass"  # tests/testbed/registry.DEFAULT_USERS
PODMAN_RUN_FLAGS = [
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
    "--tls-verify=false",
]
IDLE_CMD = '["/bin/sh", "-c", "trap \'exit 0\' TERM; sleep 2147483647 & wait $!"]'
CHILD_TIMEOUT = 300.0  # seconds any one measured or set-up command may take
SETUP_WORKERS = 4


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- prerequisites


def ensure_podman() -> None:
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


def require(*commands: str) -> None:
    missing = [c for c in commands if shutil.which(c) is None]
    if missing:
        sys.exit(f"bench: missing {', '.join(missing)}: run `sudo tests/run` first")


# --------------------------------------------------------------------------- mount namespace

CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    def enc(s: str | None) -> bytes | None:
        return s.encode() if s is not None else None

    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _umount(target: str) -> None:
    _libc.umount2(target.encode(), 2)  # MNT_DETACH; errors ignored (the namespace dies anyway)


@dataclass
class Namespace:
    """This process in a private mount namespace: /run, /var/lib/containers, /etc/containers."""

    workspace: Path
    real_systemd: bool = False
    entered: bool = False
    created_dirs: list[Path] = field(default_factory=list)
    etc_containers: Path = Path()

    def enter(self) -> None:
        if threading.active_count() != 1:
            raise RuntimeError("enter the mount namespace before starting threads")
        if _libc.unshare(CLONE_NEWNS) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
        self.entered = True
        _mount("none", "/", None, MS_REC | MS_PRIVATE, None)  # nothing propagates to the host
        # Where a real systemd answers on /run/systemd/private, keep it visible.
        self.real_systemd = systemd_bus_reachable()
        keep = self.workspace / "host-run-systemd"
        if self.real_systemd:
            keep.mkdir(parents=True)
            _mount("/run/systemd", str(keep), None, MS_BIND, None)
        # A private /run: runc's state (/run/runc), libpod's tmpdir (/run/libpod),
        # /run/containers, dockerd's leftovers, and the dummy /run/systemd/private.
        _mount("tmpfs", "/run", "tmpfs", 0, "mode=0755")
        if self.real_systemd:
            Path("/run/systemd").mkdir()
            _mount(str(keep), "/run/systemd", None, MS_BIND, None)
        varlib = self.workspace / "podman-varlib"  # blob-info-cache-v1.boltdb lands here
        varlib.mkdir(parents=True)
        self._bind(varlib, Path("/var/lib/containers"))
        self.etc_containers = self.workspace / "podman-etc"
        if Path("/etc/containers").is_dir():
            shutil.copytree("/etc/containers", self.etc_containers, symlinks=True,
                            ignore=shutil.ignore_patterns("networks"))
        self.etc_containers.mkdir(exist_ok=True)
        self._bind(self.etc_containers, Path("/etc/containers"))

    def _bind(self, source: Path, target: Path) -> None:
        if not target.exists():
            target.mkdir(parents=True)
            self.created_dirs.append(target)
        _mount(str(source), str(target), None, MS_BIND, None)

    def write_registries_conf(self, hosts: Sequence[str]) -> None:
        """Only our loopback registries, plain HTTP (what `--tls-verify=false` also says)."""
        lines = ['unqualified-search-registries = []', ""]
        for host in hosts:
            lines += ["[[registry]]", f'location = "{host}"', "insecure = true", ""]
        (self.etc_containers / "registries.conf").write_text("\n".join(lines))
        shutil.rmtree(self.etc_containers / "registries.conf.d", ignore_errors=True)

    def leave(self) -> None:
        if not self.entered:
            return
        for target in ("/etc/containers", "/var/lib/containers"):
            _umount(target)
        for directory in reversed(self.created_dirs):
            with contextlib.suppress(OSError):
                directory.rmdir()


def mounts_under(prefix: Path) -> list[str]:
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == str(prefix) or point.startswith(f"{prefix}/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


# --------------------------------------------------------------------------- dummy systemd bus


class DummySystemdBus:
    """/run/systemd/private for Podman 4.3.1's auto-update: auth, then answer method calls.

    go-systemd dials it twice (a call connection and a signal connection), authenticates
    with SASL EXTERNAL and, on the signal connection, calls org.freedesktop.DBus.AddMatch and
    waits for the reply. In dry-run nothing else is called; every method call gets an empty
    METHOD_RETURN, and the member names are recorded in `calls`.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: Counter[str] = Counter()
        self.connections = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="dummy-dbus", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buf, authed, serial = b"", False, 0
        try:
            while not self._stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while not authed and b"\r\n" in buf:
                    line, buf = buf.split(b"\r\n", 1)
                    line = line.lstrip(b"\0")
                    if line == b"AUTH":
                        conn.sendall(b"REJECTED EXTERNAL\r\n")
                    elif line.startswith(b"AUTH "):
                        conn.sendall(b"OK 0123456789abcdef0123456789abcdef\r\n")
                    elif line.startswith(b"NEGOTIATE_UNIX_FD"):
                        conn.sendall(b"AGREE_UNIX_FD\r\n")
                    elif line.startswith(b"BEGIN"):
                        authed = True
                    else:
                        conn.sendall(b"ERROR\r\n")
                while authed and len(buf) >= 16:
                    order = "<" if buf[:1] == b"l" else ">"
                    kind, flags = buf[1], buf[2]
                    body_len, msg_serial, fields_len = struct.unpack(order + "III", buf[4:16])
                    header_len = 16 + fields_len + (-fields_len % 8)
                    if len(buf) < header_len + body_len:
                        break
                    header, buf = buf[16:header_len], buf[header_len + body_len :]
                    member = re.search(rb"\x03\x01s\x00....([A-Za-z0-9_]+)\x00", header, re.S)
                    self.calls[member.group(1).decode() if member else "?"] += 1
                    if kind == 1 and not flags & 0x1:  # METHOD_CALL expecting a reply
                        serial += 1
                        reply = b"l\x02\x01\x01" + struct.pack("<III", 0, serial, 8)
                        reply += b"\x05\x01u\x00" + struct.pack("<I", msg_serial)  # REPLY_SERIAL
                        conn.sendall(reply)
        except OSError:
            return
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.path.unlink()


def systemd_bus_reachable() -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect("/run/systemd/private")
            return True
        except OSError:
            return False


# --------------------------------------------------------------------------- delaying proxy


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that adds a round-trip time, in front of the registry.

    The model of a link with round-trip time RTT: a new connection costs one RTT before its
    first byte reaches the server (the TCP handshake), and every chunk read in either
    direction is delivered RTT/2 later (so a request and its answer cost one RTT). Order is
    kept. `rtt` applies to connections accepted after it is set. `connections` counts the
    connections accepted (reset it per run).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rtt = 0.0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._main, name="delay-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError("the delaying proxy did not start")
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=256)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        rtt = self.rtt
        handshake_done = self._loop.time() + rtt
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream_port), 10
            )
        except (TimeoutError, OSError):
            writer.close()
            return
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    self._pump(reader, up_writer, rtt / 2, handshake_done),
                    self._pump(up_reader, writer, rtt / 2, 0.0),
                ),
                CHILD_TIMEOUT,
            )
        except (TimeoutError, OSError):
            pass
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        delay: float,
        not_before: float,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                wait = at - self._loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(Exception):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except OSError:
                    data = b""
                queue.put_nowait((max(self._loop.time(), not_before) + delay, data))
                if not data:
                    break
            await task
        finally:
            task.cancel()

    def stop(self) -> None:
        def close() -> None:
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(close)
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    """One run of one tool: what the kernel and the registry saw."""

    wall: float
    user: float
    sys: float
    maxrss_kb: int
    exit_code: int
    requests: dict[str, int]  # by method
    statuses: dict[str, int]  # "HEAD 200": n
    token_requests: int
    connections: int | None  # accepted by the delaying proxy (None without it)
    sane: bool
    note: str = ""

    @property
    def cpu(self) -> float:
        return self.user + self.sys


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


class Launcher:
    """Runs each measured command from a small process and reads its wait4() rusage.

    Why not fork from the benchmark itself: a child's ru_maxrss counts the memory of the
    process it was forked from (exec records the old address space's high-water mark), so a
    child of this ~50 MB Python process would never report less than ~50 MB. A tiny C
    launcher (compiled with cc into the workspace) sets that floor at ~1 MB; without a C
    compiler `python3 -I -S` does the same with a ~9 MB floor. `floor_kb` is measured (the
    peak RSS reported for /bin/true) and printed.
    """

    def __init__(self, workspace: Path) -> None:
        self.dir = workspace / "launcher"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kind = "python3 -I -S"
        self.prefix = [sys.executable, "-I", "-S", "-c", LAUNCHER_PY]
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc:
            source, binary = self.dir / "launcher.c", self.dir / "launcher"
            source.write_text(LAUNCHER_C)
            done = subprocess.run([cc, "-O2", "-o", str(binary), str(source)],
                                  capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                self.kind, self.prefix = "C (cc)", [str(binary)]
        self._count = 0
        self._lock = threading.Lock()
        self.floor_kb = self.run(["true"], dict(os.environ))[1].ru_maxrss

    def run(self, cmd: Sequence[str], env: dict[str, str], timeout: float = CHILD_TIMEOUT
            ) -> tuple[float, Any, int, str, str]:
        """Run `cmd`; its wall time, rusage (user, sys, maxrss), exit code, stdout, stderr."""
        with self._lock:
            self._count += 1
            result = self.dir / f"result-{self._count}"
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.run(
                [*self.prefix, str(result), str(int(timeout)), *cmd],
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err, timeout=timeout + 30,
            )
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
        try:
            wall, user, sys_, maxrss, code = result.read_text().split()
            result.unlink()
        except (OSError, ValueError) as error:
            raise RuntimeError(f"launcher failed ({proc.returncode}) for {cmd}: {error}; "
                               f"{stderr[-500:]}") from None
        usage = argparse.Namespace(ru_utime=float(user), ru_stime=float(sys_),
                                   ru_maxrss=int(maxrss))
        return float(wall), usage, int(code), stdout, stderr


def summarise(samples: Sequence[Sample]) -> dict[str, Any]:
    if not samples:
        return {"runs": 0}
    methods = sorted({m for s in samples for m in s.requests})
    med = statistics.median
    conns = [s.connections for s in samples if s.connections is not None]
    return {
        "runs": len(samples),
        "wall_median_s": med(s.wall for s in samples),
        "wall_min_s": min(s.wall for s in samples),
        "wall_max_s": max(s.wall for s in samples),
        "cpu_median_s": med(s.cpu for s in samples),
        "user_median_s": med(s.user for s in samples),
        "sys_median_s": med(s.sys for s in samples),
        "peak_rss_max_mb": max(s.maxrss_kb for s in samples) / 1024,
        "peak_rss_median_mb": med(s.maxrss_kb for s in samples) / 1024,
        "requests_median": {m: med(s.requests.get(m, 0) for s in samples) for m in methods},
        "requests_total_median": med(sum(s.requests.values()) for s in samples),
        "requests_vary": len({tuple(sorted(s.requests.items())) for s in samples}) > 1,
        "statuses_last": samples[-1].statuses,
        "unauthorised_median": med(
            sum(v for k, v in s.statuses.items() if k.endswith(" 401")) for s in samples
        ),
        "unauthorised_each": [
            sum(v for k, v in s.statuses.items() if k.endswith(" 401")) for s in samples
        ],
        "heads_each": [s.requests.get("HEAD", 0) for s in samples],
        "token_requests_median": med(s.token_requests for s in samples),
        "token_requests_each": [s.token_requests for s in samples],
        "connections_median": med(conns) if conns else None,
        "all_sane": all(s.sane for s in samples),
        "exit_codes": sorted({s.exit_code for s in samples}),
        "samples": [
            {
                "wall_s": round(s.wall, 4),
                "user_s": round(s.user, 4),
                "sys_s": round(s.sys, 4),
                "maxrss_kb": s.maxrss_kb,
                "exit_code": s.exit_code,
                "requests": s.requests,
                "statuses": s.statuses,
                "token_requests": s.token_requests,
                "connections": s.connections,
                "sane": s.sane,
                "note": s.note,
            }
            for s in samples
        ],
    }


# --------------------------------------------------------------------------- the bench


@dataclass
class Scenario:
    """A set of units (one registry, one podman root) that grows to N."""

    name: str
    registry: Any  # testbed.registry.Registry
    ref_host: str  # the registry part of the references (the proxy's address behind it)
    podman_root: Path
    docker_prefix: str  # docker container names: prefix + i
    podman_prefix: str
    repo_prefix: str  # bench/app, bench/tok
    auth_file: Path  # Docker config.json: REGISTRY_AUTH_FILE for podman, DOCKER_CONFIG dir
    docker_count: int = 0
    podman_count: int = 0

    def ref(self, i: int, host: str | None = None) -> str:
        return f"{host or self.ref_host}/{self.repo_prefix}{i}:latest"

    def podman(self, *args: str) -> list[str]:
        # Podman refuses a runroot longer than 50 characters: runroot and tmpdir go in the
        # namespace's private /run (a tmpfs that disappears with it), storage in the workspace.
        run = Path("/run/updater-bench") / self.name
        return [
            "podman",
            "--root", str(self.podman_root / "root"),
            "--runroot", str(run / "runroot"),
            "--tmpdir", str(run / "tmp"),
            *args,
        ]  # fmt: skip


class Bench:
    def __init__(self, args: argparse.Namespace, workspace: Path) -> None:
        self.args = args
        self.ws = workspace
        self.started = time.monotonic()
        self.deadline = self.started + args.max_minutes * 60
        self.namespace = Namespace(workspace)
        self.registry: Any = None
        self.token_registry: Any = None
        self.dockerd: Any = None
        self.proxy: DelayProxy | None = None
        self.bus: DummySystemdBus | None = None
        self.scenarios: list[Scenario] = []
        self.images_built: dict[str, int] = {}
        self.updater_cmd = self._updater_command()
        self.results: dict[str, Any] = {"scenarios": []}
        self.docker_config_dir = workspace / "docker-config"
        self.token_config_dir = workspace / "docker-config-token"

    # ------------------------------------------------------------------ environment

    @staticmethod
    def _updater_command() -> list[str]:
        """The installed console script (not a pyenv shim), else `python3 -m updater`."""
        script = Path(sysconfig.get_path("scripts")) / "updater"
        if script.is_file() and os.access(script, os.X_OK):
            return [str(script)]
        return [sys.executable, "-m", "updater"]

    def child_env(self, docker_config: Path | None = None, auth_file: Path | None = None) -> dict:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "JOURNAL_STREAM", "UPDATER_CONFIG", "UPDATER_STATE_DIR")
            and not k.lower().endswith("_proxy")
        }
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        # An installed updater runs from compiled bytecode (pip writes the .pyc files). This
        # environment sets PYTHONDONTWRITEBYTECODE=1, which would make every run compile the
        # updater's modules again (~30 ms CPU); the .pyc files go to the workspace instead of
        # the source tree.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(self.ws / "pycache")
        env["DOCKER_CONFIG"] = str(docker_config or self.docker_config_dir)
        if self.dockerd is not None:
            env["DOCKER_HOST"] = self.dockerd.host
        env["REGISTRY_AUTH_FILE"] = str(auth_file or self.docker_config_dir / "config.json")
        return env

    def check_time(self) -> bool:
        return time.monotonic() < self.deadline

    # ------------------------------------------------------------------ set-up

    def start(self) -> None:
        from testbed.engine import Dockerd
        from testbed.registry import Registry

        self.namespace.enter()
        self.launcher = Launcher(self.ws)
        self.results["launcher"] = {"kind": self.launcher.kind,
                                    "rss_floor_kb": self.launcher.floor_kb}
        for directory in (self.docker_config_dir, self.token_config_dir):
            directory.mkdir(parents=True)
        (self.docker_config_dir / "config.json").write_text("{}\n")
        os.environ["DOCKER_CONFIG"] = str(self.docker_config_dir)  # our own docker SDK too

        if self.namespace.real_systemd:
            self.results["systemd_bus"] = "real /run/systemd/private"
        else:
            self.bus = DummySystemdBus(Path("/run/systemd/private"))
            self.results["systemd_bus"] = "dummy /run/systemd/private (bench)"

        log("starting docker-registry (auth none) and dockerd")
        self.registry = Registry(self.ws / "registry")
        self.registry.start()
        self.dockerd = Dockerd(self.ws / "dockerd")
        self.dockerd.start()
        hosts = [self.registry.host]
        if self.args.latency_ms > 0 and self.args.latency_n:
            self.proxy = DelayProxy(self.registry.port)
            hosts.append(self.proxy.host)
        if self.args.token_n > 0:
            self.token_registry = Registry(self.ws / "registry-token", auth="token")
            self.token_registry.start()
            hosts.append(self.token_registry.host)
            raw = f"{TOKEN_USER}:{TOKEN_PASSWORD}".encode()
            auths = {self.token_registry.host: {"auth": base64.b64encode(raw).decode()}}
            (self.token_config_dir / "config.json").write_text(json.dumps({"auths": auths}))
        self.namespace.write_registries_conf(hosts)

    def scenario(self, name: str) -> Scenario:
        for s in self.scenarios:
            if s.name == name:
                return s
        if name == "loopback":
            s = Scenario(name, self.registry, self.registry.host, self.ws / "podman-loopback",
                         "app", "p", "bench/app", self.docker_config_dir / "config.json")
        elif name == "proxy":
            assert self.proxy is not None
            s = Scenario(name, self.registry, self.proxy.host, self.ws / "podman-proxy",
                         "app", "q", "bench/app", self.docker_config_dir / "config.json")
        else:
            s = Scenario(name, self.token_registry, self.token_registry.host,
                         self.ws / "podman-token", "tok", "t", "bench/tok",
                         self.token_config_dir / "config.json")
        self.scenarios.append(s)
        return s

    def _parallel(self, fn: Callable[[int], None], items: Sequence[int], what: str) -> None:
        if not items:
            return
        started = time.monotonic()
        with ThreadPoolExecutor(SETUP_WORKERS) as pool:
            list(pool.map(fn, items))
        log(f"{what}: {len(items)} in {time.monotonic() - started:.1f} s")

    def ensure_images(self, s: Scenario, n: int) -> None:
        """Build and push images 0..n-1 of the scenario's repositories (distinct content)."""
        from testbed import engine
        from testbed.engine import build_image, push

        # The test bed's "serve" loop forks `sleep 1` every second: 400 containers would
        # fork 400 times a second and load the machine being measured. Ours sleep for good.
        engine.BEHAVIOURS.setdefault("idle", IDLE_CMD)

        key = s.repo_prefix
        have = self.images_built.get(key, 0)
        auth = {"username": TOKEN_USER, "password": TOKEN_PASSWORD} if s.name == "token" else None

        def make(i: int) -> None:
            ref = s.ref(i, s.registry.host)
            build_image(self.dockerd, ref, seed=f"{key}{i}", behaviour="idle")
            push(self.dockerd, ref, auth=auth)

        self._parallel(make, range(have, n), f"{s.name}: images built and pushed")
        self.images_built[key] = max(have, n)

    def grow(self, s: Scenario, n: int) -> None:
        """Make the scenario's first n images, docker containers and podman containers exist."""
        from testbed.engine import push

        self.ensure_images(s, n)
        if s.name == "proxy":
            # The same images, also pushed under the proxy's address, so that the engine knows
            # their digests in the repository the updater is configured with.
            def retag(i: int) -> None:
                self.dockerd.client.api.tag(s.ref(i, s.registry.host), s.ref(i).rsplit(":", 1)[0],
                                            "latest")
                push(self.dockerd, s.ref(i))

            self._parallel(retag, range(s.docker_count, n), "proxy: tagged and pushed")
        elif s.docker_count < n:
            def run_docker(i: int) -> None:
                self.dockerd.docker("rm", "-f", f"{s.docker_prefix}{i}", check=False)
                self.dockerd.docker("run", "-d", "--network", "none", "--name",
                                    f"{s.docker_prefix}{i}", s.ref(i, s.registry.host))

            self._parallel(run_docker, range(s.docker_count, n), f"{s.name}: docker run -d")
        s.docker_count = max(s.docker_count, n)

        env = self.child_env(auth_file=s.auth_file)

        def run_podman(i: int) -> None:
            name = f"{s.podman_prefix}{i}"
            cmd = s.podman(
                "run", "-d", "--name", name,
                "--label", "io.containers.autoupdate=registry",
                "--label", f"PODMAN_SYSTEMD_UNIT={name}.service",
                *PODMAN_RUN_FLAGS, s.ref(i),
            )  # fmt: skip
            for attempt in range(3):
                done = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                      timeout=CHILD_TIMEOUT)
                if done.returncode == 0:
                    return
                subprocess.run(s.podman("rm", "-f", name), env=env, capture_output=True,
                               timeout=CHILD_TIMEOUT)
                time.sleep(0.5 * (attempt + 1))
            raise RuntimeError(f"podman run {name}: {done.stderr.strip()[-800:]}")

        self._parallel(run_podman, range(s.podman_count, n), f"{s.name}: podman run -d")
        s.podman_count = max(s.podman_count, n)

    def write_config(self, s: Scenario, n: int) -> Path:
        path = self.ws / "configs" / f"{s.name}-{n}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            lines += [f'[units."{s.docker_prefix}{i}.service"]', f'image = "{s.ref(i)}"',
                      f'container = "{s.docker_prefix}{i}"', ""]
        path.write_text("\n".join(lines))
        return path

    # ------------------------------------------------------------------ one run of a tool

    def sample(self, tool: str, s: Scenario, n: int, config: Path, state_dir: Path) -> Sample:
        registry = s.registry
        registry.clear_log()
        registry.token_requests.clear()
        if self.proxy is not None:
            self.proxy.connections = 0
        if tool == PODMAN:
            cmd = s.podman("auto-update", "--dry-run", "--authfile", str(s.auth_file))
            env = self.child_env(auth_file=s.auth_file)
        else:
            sub = "check" if tool == UPDATER_CHECK else "run"
            cmd = [*self.updater_cmd, "--config", str(config), "--state-dir", str(state_dir), sub]
            env = self.child_env(docker_config=s.auth_file.parent)
        wall, usage, code, out, err = self.launcher.run(cmd, env)
        seen = registry.requests()
        tokens = len(registry.token_requests)
        connections = self.proxy.connections if (self.proxy and s.name == "proxy") else None
        methods = Counter(r.method for r in seen)
        statuses = Counter(f"{r.method} {r.status}" for r in seen)
        sane, note = self._sane(tool, n, code, out, err)
        if not sane:
            log(f"  {tool}: unexpected result: {note}")
        return Sample(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss, code,
                      dict(methods), dict(statuses), tokens, connections, sane, note)

    @staticmethod
    def _sane(tool: str, n: int, code: int, out: str, err: str) -> tuple[bool, str]:
        """Did the tool see all n units as current / not updated?"""
        tail = (err.strip() or out.strip())[-300:]
        if code != 0:
            return False, f"exit {code}: {tail}"
        if tool == UPDATER_CHECK:
            current = sum(1 for line in out.splitlines() if re.search(r"\scurrent\s", line))
            return current == n, f"{current}/{n} current"
        if tool == UPDATER_RUN:
            expected = f"{n} unit{'s' if n != 1 else ''}: {n} unchanged"
            return expected in err, err.strip().splitlines()[-1] if err.strip() else "no summary"
        rows = [line for line in out.splitlines() if ".service" in line]
        updated = [line for line in rows if not line.rstrip().endswith("false")]
        note = f"{len(rows)}/{n} containers, {len(updated)} not false"
        return (len(rows) == n and not updated), note

    # ------------------------------------------------------------------ a scenario at one N

    def measure(self, s: Scenario, n: int, latency_ms: float, *, warm_up: bool = True,
                label: str = "") -> dict[str, Any]:
        config = self.write_config(s, n)
        state_dir = self.ws / "state" / f"{s.name}-{n}-{int(latency_ms)}"
        samples: dict[str, list[Sample]] = {t: [] for t in TOOLS}
        spent: dict[str, float] = {t: 0.0 for t in TOOLS}
        if self.proxy is not None:
            self.proxy.rtt = latency_ms / 1000 if s.name == "proxy" else 0.0
        try:
            if warm_up:  # fills the page cache and, for run, the state directory; not counted
                for tool in TOOLS:
                    self.sample(tool, s, n, config, state_dir)
            for i in range(self.args.repeat):
                for tool in TOOLS:
                    enough = len(samples[tool]) >= min(3, self.args.repeat)
                    if enough and (spent[tool] > self.args.case_seconds or not self.check_time()):
                        continue
                    got = self.sample(tool, s, n, config, state_dir)
                    samples[tool].append(got)
                    spent[tool] += got.wall
                if i == 0:
                    log("  first round: " + ", ".join(
                        f"{t.split()[0]} {t.split()[1]} {samples[t][-1].wall:.3f} s"
                        for t in TOOLS if samples[t]))
        finally:
            if self.proxy is not None:
                self.proxy.rtt = 0.0
        result = {
            "n": n,
            "latency_ms": latency_ms,
            "scenario": s.name,
            "label": label or s.name,
            "registry_auth": s.registry.auth,
            "tools": {t: summarise(samples[t]) for t in TOOLS},
        }
        result["ratios"] = ratios(result["tools"])
        return result

    # ------------------------------------------------------------------ extras

    def python_baseline(self) -> dict[str, Any]:
        """What starting this Python costs, with and without site (.pth files and all)."""
        out = {}
        for label, cmd in (("python3 -c pass", [sys.executable, "-c", "pass"]),
                           ("python3 -S -c pass", [sys.executable, "-S", "-c", "pass"])):
            walls, cpus, rss = [], [], []
            self.launcher.run(cmd, self.child_env())  # warm-up: writes the .pyc files
            for _ in range(max(3, self.args.repeat)):
                wall, usage, _, _, _ = self.launcher.run(cmd, self.child_env())
                walls.append(wall)
                cpus.append(usage.ru_utime + usage.ru_stime)
                rss.append(usage.ru_maxrss)
            out[label] = {
                "wall_median_s": statistics.median(walls),
                "cpu_median_s": statistics.median(cpus),
                "peak_rss_mb": max(rss) / 1024,
            }
        return out

    def importtime(self, config: Path) -> dict[str, Any]:
        """`python3 -X importtime -m updater check`: where start-up time goes.

        importtime prints children before their parent; each row is attributed to its
        top-level (depth 0) import: `site` (the environment's .pth hooks) or `updater.*`.
        """
        cmd = [sys.executable, "-X", "importtime", "-m", "updater", "--config", str(config),
               "--state-dir", str(self.ws / "state" / "importtime"), "check"]
        _, usage, code, _, err = self.launcher.run(cmd, self.child_env())
        rows: list[tuple[int, int, int, str, str]] = []  # self, cumulative, depth, name, root
        pending: list[tuple[int, int, int, str]] = []
        for line in err.splitlines():
            m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
            if not m:
                continue
            row = (int(m[1]), int(m[2]), len(m[3]) // 2, m[4])
            pending.append(row)
            if row[2] == 0:
                rows += [(*r, row[3]) for r in pending]
                pending = []
        top_level = sorted((r for r in rows if r[2] == 0), key=lambda r: -r[1])
        # Inside the updater's own imports: packages and stdlib modules (no dot in the name),
        # wherever first imported; cumulative = what each brought in that was not loaded yet.
        ours = sorted(
            (r for r in rows if r[4].startswith("updater") and r[2] > 0 and "." not in r[3]
             and not r[3].startswith("_")),
            key=lambda r: -r[1],
        )
        updater_modules = sorted(
            (r for r in rows if r[3].startswith("updater.")), key=lambda r: -r[0]
        )
        total = sum(r[1] for r in top_level)
        return {
            "exit_code": code,
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "total_import_us": total,
            "site_us": sum(r[1] for r in top_level if r[3] == "site"),
            "updater_us": sum(r[1] for r in top_level if r[3].startswith("updater")),
            "top_level_by_cumulative": [
                {"module": r[3], "cumulative_us": r[1], "self_us": r[0]} for r in top_level[:10]
            ],
            "updater_dependencies_by_cumulative": [
                {"module": r[3], "cumulative_us": r[1], "depth": r[2]} for r in ours[:15]
            ],
            "updater_modules_by_self": [
                {"module": r[3], "self_us": r[0]} for r in updater_modules[:15]
            ],
            "raw": err[-20000:],
        }

    def profile(self, s: Scenario, n: int) -> dict[str, Any]:
        """`python3 -m cProfile -m updater run` once (--profile): where the CPU goes."""
        import io
        import pstats

        config = self.write_config(s, n)
        state_dir = self.ws / "state" / f"{s.name}-{n}-0"
        out: dict[str, Any] = {}
        for tool, sub in ((UPDATER_CHECK, "check"), (UPDATER_RUN, "run")):
            stats_file = self.ws / f"profile-{sub}.pstats"
            cmd = [sys.executable, "-m", "cProfile", "-o", str(stats_file), "-m", "updater",
                   "--config", str(config), "--state-dir", str(state_dir), sub]
            self.launcher.run(cmd, self.child_env())
            text = io.StringIO()
            try:
                stats = pstats.Stats(str(stats_file), stream=text)
            except (OSError, TypeError, EOFError) as err:
                out[tool] = f"no profile: {err}"
                continue
            stats.sort_stats("cumulative").print_stats(30)
            stats.sort_stats("tottime").print_stats(20)
            out[tool] = text.getvalue()
        return out

    def syscalls(self, s: Scenario, n: int) -> dict[str, Any]:
        """One extra run of each tool under `strace -f -c` (not timed): fsyncs, connects."""
        strace = shutil.which("strace")
        if not strace:
            return {"skipped": "strace not installed"}
        config = self.write_config(s, n)
        state_dir = self.ws / "state" / f"{s.name}-{n}-0"
        out: dict[str, Any] = {}
        for tool in TOOLS:
            if tool == PODMAN:
                cmd = s.podman("auto-update", "--dry-run", "--authfile", str(s.auth_file))
            else:
                sub = "check" if tool == UPDATER_CHECK else "run"
                cmd = [*self.updater_cmd, "--config", str(config), "--state-dir",
                       str(state_dir), sub]
            report = self.ws / "strace.txt"
            traced = [strace, "-f", "-qq", "-c", "-o", str(report), "-e",
                      "trace=fsync,fdatasync,connect,execve,rename,renameat,renameat2", *cmd]
            subprocess.run(traced, env=self.child_env(auth_file=s.auth_file),
                           capture_output=True, timeout=CHILD_TIMEOUT)
            counts: dict[str, int] = {}
            with contextlib.suppress(OSError):
                for line in report.read_text().splitlines():
                    m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$",
                                 line)
                    if m and m[2] != "total":
                        counts[m[2]] = int(m[1])
            out[tool] = counts
        return out

    # ------------------------------------------------------------------ everything

    def run(self) -> dict[str, Any]:
        args = self.args
        self.results["machine"] = machine_info()
        self.results["args"] = vars(args)
        self.results["updater_command"] = self.updater_cmd
        self.results["child_env"] = (
            "PYTHONDONTWRITEBYTECODE removed, PYTHONPYCACHEPREFIX=<workspace>/pycache"
            if os.environ.get("PYTHONDONTWRITEBYTECODE")
            else "PYTHONPYCACHEPREFIX=<workspace>/pycache"
        )
        self.start()
        self.results["versions"] = versions(self.dockerd)
        log(f"updater command: {' '.join(self.updater_cmd)}")
        self.results["python_baseline"] = self.python_baseline()
        print_header(self.results)
        loop = self.scenario("loopback")
        for n in sorted(set(args.n)):
            if not self.check_time():
                log(f"time budget spent: N={n} skipped")
                self.results.setdefault("skipped", []).append(f"loopback N={n}")
                continue
            log(f"N={n}: setting up")
            self.grow(loop, n)
            log(f"N={n}: measuring on loopback")
            self.add(self.measure(loop, n, 0, label="loopback"))
            if n == min(args.n):
                self.results["importtime"] = self.importtime(self.write_config(loop, n))
            if args.profile and n == min(args.n):
                self.results["profile"] = self.profile(loop, n)
                for tool, text in self.results["profile"].items():
                    print(f"\ncProfile of {tool}, N={n}:\n{text}")
            if n in (min(args.n), max(args.n)):
                self.results.setdefault("syscalls", {})[str(n)] = self.syscalls(loop, n)
                print_syscalls(n, self.results["syscalls"][str(n)])
            if self.proxy is not None and n in args.latency_n:
                if not self.check_time():
                    self.results.setdefault("skipped", []).append(f"proxy N={n}")
                    continue
                proxy = self.scenario("proxy")
                log(f"N={n}: setting up behind the proxy")
                self.grow(proxy, n)
                log(f"N={n}: measuring behind {args.latency_ms:g} ms RTT")
                self.add(self.measure(proxy, n, args.latency_ms,
                                      label=f"behind {args.latency_ms:g} ms RTT"))
        if args.token_n > 0 and self.check_time():
            token = self.scenario("token")
            log(f"token auth N={args.token_n}: setting up")
            self.grow(token, args.token_n)
            log(f"token auth N={args.token_n}: measuring (no warm-up: run 1 is the first)")
            self.add(self.measure(token, args.token_n, 0, warm_up=False,
                                  label="loopback, auth=token"))
        if self.bus is not None:
            self.results["dummy_bus_calls"] = dict(self.bus.calls)
            self.results["dummy_bus_connections"] = self.bus.connections
        return self.results

    def add(self, result: dict[str, Any]) -> None:
        self.results["scenarios"].append(result)
        print_scenario(result)

    # ------------------------------------------------------------------ clean-up

    def cleanup(self) -> None:
        log("cleaning up")
        for s in self.scenarios:
            if s.podman_count or (s.podman_root / "root").exists():
                subprocess.run(s.podman("rm", "-f", "-a", "-t", "0"), env=self.child_env(),
                               capture_output=True, timeout=CHILD_TIMEOUT)
        if self.proxy is not None:
            self.proxy.stop()
        if self.bus is not None:
            self.bus.stop()
        if self.dockerd is not None:
            with contextlib.suppress(Exception):
                ids = self.dockerd.docker("ps", "-aq", check=False).stdout.split()
                if ids:
                    self.dockerd.docker("rm", "-f", *ids, check=False)
            with contextlib.suppress(Exception):
                self.dockerd.stop()
        for registry in (self.registry, self.token_registry):
            if registry is not None:
                with contextlib.suppress(Exception):
                    registry.stop()
        kill_leftovers(self.ws)
        for point in mounts_under(self.ws):
            _umount(point)
        self.namespace.leave()
        shutil.rmtree(self.ws, ignore_errors=True)


def kill_leftovers(workspace: Path) -> None:
    """conmon and container processes whose command line names our workspace (bounded)."""
    me = os.getpid()
    for _ in range(3):
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if str(workspace).encode() in cmdline:
                found.append(int(entry))
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)


def ratios(tools: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    podman = tools[PODMAN]
    out: dict[str, dict[str, float | None]] = {}
    for tool in (UPDATER_CHECK, UPDATER_RUN):
        mine = tools[tool]
        out[tool] = {}
        for key in ("wall_median_s", "cpu_median_s", "peak_rss_max_mb"):
            a, b = mine.get(key), podman.get(key)
            out[tool][key] = (a / b) if a is not None and b else None
    return out


# --------------------------------------------------------------------------- reporting


def machine_info() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = f.readline().split(":", 1)[1].strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "memory": mem,
        "os": _os_release(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "loadavg_at_start": os.getloadavg(),
    }


def _os_release() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return ""


def versions(dockerd: Any) -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (done.stdout or done.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "?"

    from updater import __version__

    return {
        "python": sys.version.split()[0],
        "updater": __version__,
        "podman": first_line(["podman", "--version"]),
        "dockerd": first_line(["dockerd", "--version"]),
        "docker-registry": first_line(["docker-registry", "--version"]),
        "runc": first_line(["runc", "--version"]),
        "git": first_line(["git", "-C", str(REPO), "describe", "--always", "--dirty"]),
    }


def _fmt_requests(summary: dict[str, Any]) -> tuple[str, str, str, str]:
    req = summary.get("requests_median", {})
    head, get = req.get("HEAD", 0), req.get("GET", 0)
    other = sum(v for k, v in req.items() if k not in ("HEAD", "GET"))
    unauthorised = summary.get("unauthorised_median", 0)
    return f"{head:g}", f"{get:g}", f"{other:g}", f"{unauthorised:g}"


def print_scenario(result: dict[str, Any]) -> None:
    n, tools = result["n"], result["tools"]
    title = f"N={n} units, {result['label']}"
    print(f"\n{title}\n{'-' * len(title)}")
    header = ("tool", "wall med", "wall min", "CPU med", "peak RSS", "HEAD", "GET", "other",
              "401s", "token", "conns", "runs")
    rows = [header]
    for tool in TOOLS:
        s = tools[tool]
        if not s.get("runs"):
            rows.append((tool, *["-"] * (len(header) - 1)))
            continue
        head, get, other, unauth = _fmt_requests(s)
        conns = s.get("connections_median")
        flag = "" if s["all_sane"] else " (!)"
        rows.append((
            tool + flag,
            f"{s['wall_median_s']:.3f} s",
            f"{s['wall_min_s']:.3f} s",
            f"{s['cpu_median_s']:.3f} s",
            f"{s['peak_rss_max_mb']:.1f} MB",
            head, get, other, unauth,
            f"{s['token_requests_median']:g}",
            "-" if conns is None else f"{conns:g}",
            str(s["runs"]),
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        rest = zip(row[1:], widths[1:], strict=True)
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in rest]
        print("  ".join(cells))
    for tool, r in result["ratios"].items():
        parts = [
            f"{label} {r[key]:.2f}x" if r[key] is not None else f"{label} -"
            for label, key in (("wall", "wall_median_s"), ("CPU", "cpu_median_s"),
                               ("RSS", "peak_rss_max_mb"))
        ]
        print(f"ratio {tool} / podman: " + ", ".join(parts))
    if result["scenario"] == "token":
        for tool in TOOLS:
            each = tools[tool].get("token_requests_each", [])
            if each:
                print(f"per run, {tool}: token requests {each}, 401s "
                      f"{tools[tool]['unauthorised_each']}, requests "
                      f"{[sum(x['requests'].values()) for x in tools[tool]['samples']]}")
    for tool in TOOLS:
        s = tools[tool]
        if s.get("runs") and s.get("requests_vary"):
            print(f"note: {tool}: the requests differed between runs (see results.json)")
        if s.get("runs") and not s.get("all_sane"):
            notes = {x['note'] for x in s['samples'] if not x['sane']}
            print(f"note: {tool}: unexpected result: {'; '.join(sorted(notes))[:300]}")
    sys.stdout.flush()


def print_syscalls(n: int, counts: dict[str, Any]) -> None:
    if "skipped" in counts:
        print(f"\nsyscalls at N={n}: {counts['skipped']}")
        return
    print(f"\nsyscalls of one run each under strace -f -c, N={n} (loopback; connect counts "
          "the Docker socket too):")
    for tool, c in counts.items():
        renames = sum(v for k, v in c.items() if k.startswith("rename"))
        print(f"  {tool}: fsync {c.get('fsync', 0) + c.get('fdatasync', 0)}, connect "
              f"{c.get('connect', 0)}, execve {c.get('execve', 0)}, rename {renames}")
    sys.stdout.flush()


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets, read off the results (reported, not asserted)."""
    lines = []

    def find(n: int, scenario: str) -> dict[str, Any] | None:
        for r in results["scenarios"]:
            if r["n"] == n and r["scenario"] == scenario:
                return r
        return None

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for r in results["scenarios"]:
        for tool in (UPDATER_CHECK, UPDATER_RUN):
            s = r["tools"][tool]
            if s.get("runs") and r["scenario"] != "token":
                heads = s["requests_median"].get("HEAD", 0)
                total = s["requests_total_median"]
                ok = heads == r["n"] and total == r["n"]
                lines.append(f"one HEAD per unit, {tool}, N={r['n']} {r['label']}: "
                             f"{heads:g} HEAD, {total:g} requests: {verdict(ok)}")
    r = find(50, "proxy")
    if r:
        ratio = r["ratios"][UPDATER_CHECK]["wall_median_s"]
        run_ratio = r["ratios"][UPDATER_RUN]["wall_median_s"]
        if ratio is not None and run_ratio is not None:
            ok = verdict(max(ratio, run_ratio) <= 0.1)
            lines.append(f"N=50 behind {r['latency_ms']:g} ms RTT, wall <= 0.1x podman: check "
                         f"{ratio:.2f}x, run {run_ratio:.2f}x: {ok}")
    r = find(20, "loopback")
    if r:
        ratio = r["ratios"][UPDATER_CHECK]["wall_median_s"]
        run_ratio = r["ratios"][UPDATER_RUN]["wall_median_s"]
        if ratio is not None and run_ratio is not None:
            lines.append(f"N=20 loopback, wall <= 1.0x podman: check {ratio:.2f}x, "
                         f"run {run_ratio:.2f}x: {verdict(max(ratio, run_ratio) <= 1.0)}")
    r = find(10, "loopback")
    if r and r["tools"][UPDATER_RUN].get("runs"):
        cpu = r["tools"][UPDATER_RUN]["cpu_median_s"]
        lines.append(f"idle run N=10, CPU <= 0.15 s: {cpu:.3f} s: {verdict(cpu <= 0.15)}")
    r = find(200, "loopback")
    if r:
        rss = max(r["tools"][t].get("peak_rss_max_mb", 0) for t in (UPDATER_CHECK, UPDATER_RUN))
        lines.append(f"peak RSS <= 40 MB at N=200: {rss:.1f} MB: {verdict(rss <= 40)}")
    r = find(results["args"]["token_n"], "token")
    if r:
        each = r["tools"][UPDATER_RUN].get("token_requests_each", [])
        if len(each) > 1:
            lines.append(f"no token request while a cached token is valid (run 2 of updater "
                         f"run, auth=token, N={r['n']}): {each[1]}: {verdict(each[1] == 0)}")
    return lines


def print_header(results: dict[str, Any]) -> None:
    m = results["machine"]
    print(f"updater benchmark, {m['date_utc']}")
    load = ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
    print(f"machine: {m['nproc']} CPUs, {m['cpu_model']}, {m['memory']}, kernel {m['kernel']}, "
          f"{m['os']}; load average at start {load}")
    v = results.get("versions", {})
    print("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    print(f"updater command: {' '.join(results['updater_command'])}")
    launcher = results.get("launcher", {})
    print(f"measured through a {launcher.get('kind')} launcher (wait4 rusage); its peak-RSS "
          f"floor: {launcher.get('rss_floor_kb', 0) / 1024:.1f} MB")
    print(f"systemd bus for podman: {results.get('systemd_bus')}")
    print(f"children's environment: {results.get('child_env')}; DOCKER_HOST is the private "
          "dockerd, DOCKER_CONFIG a temporary one")
    for label, b in results.get("python_baseline", {}).items():
        print(f"baseline `{label}`: wall {b['wall_median_s']:.3f} s, CPU "
              f"{b['cpu_median_s']:.3f} s, peak RSS {b['peak_rss_mb']:.1f} MB")
    sys.stdout.flush()


def print_footer(results: dict[str, Any]) -> None:
    imp = results.get("importtime")
    if imp:
        print(f"\n`python3 -X importtime -m updater check` (N={min(results['args']['n'])}): "
              f"imports {imp['total_import_us'] / 1000:.0f} ms under importtime: site (this "
              f"environment's .pth hooks) {imp['site_us'] / 1000:.0f} ms, the updater's own "
              f"imports {imp['updater_us'] / 1000:.0f} ms; that run's CPU {imp['cpu_s']:.3f} s")
        print("  the updater's imports, costliest dependencies (cumulative, where first imported):")
        for row in imp["updater_dependencies_by_cumulative"][:12]:
            print(f"  {row['cumulative_us'] / 1000:7.1f} ms  {row['module']}")
        print("  the updater's own modules (self time):")
        for row in imp["updater_modules_by_self"][:6]:
            print(f"  {row['self_us'] / 1000:7.1f} ms  {row['module']}")
    print("\ntargets (issue 5):")
    for line in targets(results):
        print(f"  {line}")
    print(f"\nsetup and measurement took {results['total_seconds']:.0f} s; load average at end "
          f"{', '.join(f'{x:.2f}' for x in results['loadavg_at_end'])}")
    print(f"results: {RESULTS}")


# --------------------------------------------------------------------------- main


def int_list(text: str) -> list[int]:
    values = [int(x) for x in text.split(",") if x.strip()]
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError("sizes must not be negative")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int_list, default=[10, 20, 50, 200],
                   help="numbers of units (default 10,20,50,200)")
    p.add_argument("--latency-ms", type=float, default=50,
                   help="added round-trip time behind the proxy, ms (default 50; 0: no proxy)")
    p.add_argument("--latency-n", type=int_list, default=[20, 50],
                   help="the N measured behind the proxy too (default 20,50)")
    p.add_argument("--repeat", type=int, default=5, help="runs per tool and case (median)")
    p.add_argument("--case-seconds", type=float, default=40,
                   help="stop repeating a tool in a case after this much wall time (>= 3 runs)")
    p.add_argument("--token-n", type=int, default=10,
                   help="units in the auth=token case (default 10; 0: skip)")
    p.add_argument("--max-minutes", type=float, default=12,
                   help="skip the remaining cases after this long (default 12)")
    p.add_argument("--profile", action="store_true",
                   help="also print a cProfile of `updater check` and `updater run` at the "
                   "smallest N (not timed)")
    args = p.parse_args(argv)
    if args.repeat < 1 or not args.n:
        p.error("--repeat must be >= 1 and --n must name a size")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench: run as root (it starts dockerd, a registry and podman containers)")
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    require("dockerd", "docker", "docker-registry", "runc")
    ensure_podman()
    require("podman")
    workspace = Path(tempfile.mkdtemp(prefix="updater-bench-"))
    bench = Bench(args, workspace)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    results: dict[str, Any] = {}
    try:
        results = bench.run()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        bench.cleanup()
    results["total_seconds"] = time.monotonic() - bench.started
    results["loadavg_at_end"] = os.getloadavg()
    print_footer(results)
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
