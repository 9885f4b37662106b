"""A real etcd cluster for tests: sid's etcd 3.5 (fetched by testbed/engines.sh), N members on
127.0.0.1 with free client and peer ports, data on /dev/shm, each member in a session of its
own so that a fault test can kill, freeze or restart one by its pid.

Optional TLS (a test CA, the server certificate for 127.0.0.1, a client certificate that
every https client must present) beside the plain-http listener, and optional auth (user
`root`, user `updater` whose role may read and write `/updater/` only). A `Watcher` records
what etcd itself says happened under a prefix, with `etcdctl watch`, independently of the
updater's client.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from testbed import needs
from testbed.engine import ENGINES
from testbed.registry import _free_port, _TestPKI

ETCD = ENGINES / "etcd/usr/bin/etcd"
ETCDCTL = ENGINES / "etcd/usr/bin/etcdctl"
ROOT_PASSWORD = "root-test-pass"
USER = "updater"
PASSWORD = "updater-test-pass"
PREFIX = "/updater/"  # what the `updater` role may read and write


@dataclass
class Member:
    name: str
    client: str  # http://127.0.0.1:PORT
    tls_client: str | None  # https://127.0.0.1:PORT with TLS
    peer: str
    data: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None


class Cluster:
    """`members` etcd members on loopback; `endpoints` are their plain-http client URLs,
    `tls_endpoints` their https ones (with `tls`). `heartbeat` and `election` are etcd's
    timing flags in ms; the minimum lease TTL etcd grants follows from them (1.5 election
    timeouts, rounded up to whole seconds: 2 s for the defaults)."""

    def __init__(
        self,
        workdir: Path,
        members: int = 3,
        *,
        tls: bool = False,
        auth: bool = False,
        heartbeat: int = 100,
        election: int = 1000,
    ) -> None:
        needs(str(ETCD), str(ETCDCTL))
        self.workdir = workdir
        self.tls = tls
        self.auth = auth
        workdir.mkdir(parents=True, exist_ok=True)
        # RAM, not the disk the CI run also writes to: fsyncs cost nothing there.
        self._shm = Path(tempfile.mkdtemp(prefix=f"updater-etcd-{os.getpid()}-", dir=_shm()))
        self.certs = workdir / "certs"
        self.pki = _TestPKI.generate() if tls else None
        if self.pki is not None:
            self.pki.write(self.certs)
        self._timing = [f"--heartbeat-interval={heartbeat}", f"--election-timeout={election}"]
        self.token = f"t-{os.getpid()}-{self._shm.name}"
        self.members = [self._member(i) for i in range(members)]

    def _member(self, i: int) -> Member:
        name = f"m{i + 1}"
        return Member(
            name=name,
            client=f"http://127.0.0.1:{_free_port()}",
            tls_client=f"https://127.0.0.1:{_free_port()}" if self.tls else None,
            peer=f"http://127.0.0.1:{_free_port()}",
            data=self._shm / name,
            log=self.workdir / f"{name}.log",
        )

    @property
    def endpoints(self) -> list[str]:
        return [m.client for m in self.members]

    @property
    def tls_endpoints(self) -> list[str]:
        return [m.tls_client for m in self.members if m.tls_client]

    @property
    def ca_file(self) -> str:
        return str(self.certs / "ca.pem")

    @property
    def cert_file(self) -> str:
        return str(self.certs / "client.pem")

    @property
    def key_file(self) -> str:
        return str(self.certs / "client-key.pem")

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30) -> None:
        """Start every member (they elect a leader together) and wait until each is healthy;
        then set up auth when asked. Nothing is left running when that fails."""
        try:
            for member in self.members:
                self._spawn(member)
            self.wait_healthy(timeout=timeout)
            if self.auth:
                self._enable_auth()
        except BaseException:
            self.stop()
            raise

    def _command(self, member: Member) -> list[str]:
        clients = ",".join(u for u in (member.client, member.tls_client) if u)
        command = [
            str(ETCD),
            f"--name={member.name}",
            f"--data-dir={member.data}",
            f"--listen-client-urls={clients}",
            f"--advertise-client-urls={clients}",
            f"--listen-peer-urls={member.peer}",
            f"--initial-advertise-peer-urls={member.peer}",
            "--initial-cluster=" + ",".join(f"{m.name}={m.peer}" for m in self.members),
            f"--initial-cluster-token={self.token}",
            "--initial-cluster-state=new",  # ignored on a restart: the data dir has the cluster
            "--unsafe-no-fsync",
            "--logger=zap",
            "--log-outputs=stderr",
            *self._timing,
        ]
        if self.tls:
            command += [
                f"--cert-file={self.certs / 'server.pem'}",
                f"--key-file={self.certs / 'server-key.pem'}",
                f"--trusted-ca-file={self.ca_file}",
                "--client-cert-auth",  # on the https listener; the http one ignores it
            ]
        return command

    def _spawn(self, member: Member) -> None:
        with open(member.log, "ab") as log:
            member.process = subprocess.Popen(
                self._command(member),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.workdir,
                start_new_session=True,  # setsid: a member's signals reach it alone
            )

    def wait_healthy(self, *members: int, timeout: float = 30) -> None:
        """Wait until each of `members` (default: all) answers /health with true."""
        indexes = members or tuple(range(len(self.members)))
        deadline = time.monotonic() + timeout
        for i in indexes:
            member = self.members[i]
            while not self._healthy(member):
                process = member.process
                if process is None or process.poll() is not None:
                    raise RuntimeError(f"etcd {member.name} exited:\n{self.log_tail(i)}")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"etcd {member.name} not healthy after {timeout} s:\n{self.log_tail(i)}"
                    )
                time.sleep(0.05)

    def _healthy(self, member: Member) -> bool:
        try:
            with urllib.request.urlopen(f"{member.client}/health", timeout=1) as answer:
                return bool(json.load(answer).get("health") == "true")
        except (OSError, ValueError):  # refused, timed out, 503 (no leader), half-written JSON
            return False

    def stop(self) -> None:
        """Kill every member and remove the data on /dev/shm. SIGKILL: on SIGTERM a leader
        first tries to hand over to members that are stopping too, for seconds."""
        for i in range(len(self.members)):
            self._signal(i, signal.SIGKILL)
        shutil.rmtree(self._shm, ignore_errors=True)

    def kill(self, *members: int) -> None:
        """SIGKILL members: a crash."""
        for i in members:
            self._signal(i, signal.SIGKILL)

    def freeze(self, *members: int) -> None:
        """SIGSTOP members: hung, they accept connections and never answer."""
        for i in members:
            self._send(i, signal.SIGSTOP)

    def thaw(self, *members: int) -> None:
        for i in members:
            self._send(i, signal.SIGCONT)

    def restart(self, *members: int, timeout: float = 30) -> None:
        """Stop (if running) and start again on the same ports and data, then wait until each
        is healthy, which needs a quorum of members up."""
        for i in members:
            self._signal(i, signal.SIGTERM)
            self._spawn(self.members[i])
        self.wait_healthy(*members, timeout=timeout)

    def heal(self, timeout: float = 30) -> None:
        """Thaw every member and start the dead ones: the whole cluster healthy again."""
        self.thaw(*range(len(self.members)))
        dead = [i for i in range(len(self.members)) if not self.running(i)]
        for i in dead:
            self._signal(i, signal.SIGKILL)  # reap it
            self._spawn(self.members[i])
        self.wait_healthy(timeout=timeout)

    def running(self, i: int) -> bool:
        process = self.members[i].process
        return process is not None and process.poll() is None

    def followers(self) -> list[int]:
        """The running members that do not lead."""
        leader = self.leader()
        return [i for i in range(len(self.members)) if i != leader and self.running(i)]

    def _send(self, i: int, sig: signal.Signals) -> None:
        process = self.members[i].process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)

    def _signal(self, i: int, sig: signal.Signals) -> None:
        member = self.members[i]
        process, member.process = member.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)  # its own session: the member and nothing else
            os.killpg(process.pid, signal.SIGCONT)  # a frozen one must see the signal too
        except ProcessLookupError:
            return
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def log_tail(self, i: int, lines: int = 20) -> str:
        try:
            text = self.members[i].log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ asking it

    def etcdctl(self, *args: str, user: str | None = "root", check: bool = True) -> str:
        """etcdctl against the running members (as root once auth is on); its stdout."""
        endpoints = [m.client for i, m in enumerate(self.members) if self.running(i)]
        command = [str(ETCDCTL), f"--endpoints={','.join(endpoints)}", "--command-timeout=5s"]
        if self.auth and user:
            password = ROOT_PASSWORD if user == "root" else PASSWORD
            command.append(f"--user={user}:{password}")
        done = subprocess.run(
            [*command, *args], capture_output=True, text=True, timeout=30, env=_environ()
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done.stdout

    def _enable_auth(self) -> None:
        for args in (
            ("user", "add", f"root:{ROOT_PASSWORD}"),
            ("user", "add", f"{USER}:{PASSWORD}"),
            ("role", "add", USER),
            ("role", "grant-permission", USER, "--prefix=true", "readwrite", PREFIX),
            ("user", "grant-role", USER, USER),
            ("auth", "enable"),
        ):
            self.etcdctl(*args, user=None)

    def status(self, i: int) -> dict[str, Any]:
        """The member's /v3/maintenance/status answer (its leader, its revision...)."""
        return self._post(i, "/v3/maintenance/status", {})

    def leader(self) -> int:
        """The index of the member that leads, as the running members see it."""
        running = [i for i in range(len(self.members)) if self.running(i)]
        statuses = {i: self.status(i) for i in running}
        ids = {status["header"]["member_id"]: i for i, status in statuses.items()}
        for status in statuses.values():
            if status.get("leader") in ids:
                return ids[status["leader"]]
        raise RuntimeError("no running etcd member knows a leader")

    def value(self, key: str) -> bytes | None:
        """The key's value as etcdctl reads it (not through the updater's client)."""
        answer = json.loads(self.etcdctl("get", key, "-w", "json"))
        kvs = answer.get("kvs") or []
        return b64decode(kvs[0].get("value", "")) if kvs else None

    def revision(self) -> int:
        """The store's current revision, read linearizably."""
        answer = json.loads(self.etcdctl("get", "/", "--prefix", "--limit=1", "-w", "json"))
        return int(answer["header"]["revision"])

    def _post(self, i: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self.members[i].client + path, data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            result: dict[str, Any] = json.load(answer)
            return result


def _shm() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def _environ() -> dict[str, str]:
    """etcdctl reads ETCDCTL_* variables: none of the caller's may leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}


# --------------------------------------------------------------------------- the observer


@dataclass(frozen=True)
class Event:
    revision: int
    type: str  # "PUT" or "DELETE"
    key: str
    value: bytes
    lease: int
    seen: float = field(default=0.0, compare=False)  # time.monotonic() when the watch read it


class Watcher:
    """`etcdctl watch --prefix PREFIX` in the background from the revision after a snapshot,
    so no event under the prefix is missed, however late etcdctl connects; `events` in the
    store's order (by revision, and within one transaction in its order)."""

    def __init__(self, cluster: Cluster, prefix: str, endpoints: list[str] | None = None) -> None:
        """`endpoints`: etcdctl's, in its order (default: the cluster's)."""
        self.cluster = cluster
        self.prefix = prefix
        self.endpoints = endpoints or cluster.endpoints
        self.initial: dict[str, bytes] = {}
        self.events: list[Event] = []
        self._changed = threading.Condition()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._seen = 0  # the last revision seen: a watch started again resumes after it
        self._spawning = threading.Lock()
        self._stopping = threading.Event()
        self.log = cluster.workdir / "watch.log"

    def start(self) -> Watcher:
        snapshot = json.loads(self.cluster.etcdctl("get", self.prefix, "--prefix", "-w", "json"))
        self._seen = int(snapshot["header"]["revision"])
        for kv in snapshot.get("kvs", []):
            self.initial[b64decode(kv["key"]).decode()] = b64decode(kv.get("value", ""))
        self._spawn()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _spawn(self) -> None:
        """etcdctl watching from the revision after the last one seen."""
        endpoints = ",".join(self.endpoints)  # it fails over and resumes by itself
        command = [str(ETCDCTL), f"--endpoints={endpoints}", "watch", "--prefix", self.prefix]
        command += [f"--rev={self._seen + 1}", "-w", "json"]
        if self.cluster.auth:
            command.insert(2, f"--user=root:{ROOT_PASSWORD}")
        with open(self.log, "ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=_environ(),
                start_new_session=True,
            )

    def _read(self) -> None:
        """The events, for as long as the watcher runs. etcd cancels a watch whose member lost
        its leader (etcdctl asks for one) and etcdctl then exits: a new one resumes it."""
        while True:
            with self._spawning:
                process = self._process
            if process is None:
                return
            assert process.stdout is not None
            for line in process.stdout:
                if line.startswith("{"):
                    self._add([_event(e) for e in json.loads(line).get("Events") or []])
            process.wait()
            if self._stopping.wait(0.5):  # a cluster without quorum: try again, not at once
                return
            with self._spawning:
                if self._stopping.is_set():
                    return
                self._spawn()

    def _add(self, events: list[Event]) -> None:
        with self._changed:
            self.events.extend(events)
            self._seen = max([self._seen, *(e.revision for e in events)])
            self._changed.notify_all()

    def wait(self, predicate: Callable[[list[Event]], bool], timeout: float = 10) -> None:
        """Wait until `predicate(events)` holds; TimeoutError naming what was seen if not."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.events), timeout):
                raise TimeoutError(f"the watch of {self.prefix} saw only {self.events}")

    def wait_revision(self, revision: int, timeout: float = 10) -> None:
        """Wait until the watch has seen the event written at `revision`."""
        self.wait(lambda events: any(e.revision >= revision for e in events), timeout)

    def present(self, under: str = "") -> set[str]:
        """The keys under the prefix (or under `under`, within it) as of the last event seen."""
        found = {key for key in self.initial if key.startswith(under)}
        with self._changed:
            for event in self.events:
                if event.key.startswith(under):
                    (found.add if event.type == "PUT" else found.discard)(event.key)
        return found

    def most_present(self, under: str = "") -> int:
        """The most keys under the prefix (or under `under`, within it) at any revision, from
        the snapshot and the events."""
        present = {key for key in self.initial if key.startswith(under)}
        most = len(present)
        with self._changed:
            events = [e for e in self.events if e.key.startswith(under)]
        for i, event in enumerate(events):
            if event.type == "PUT":
                present.add(event.key)
            else:
                present.discard(event.key)
            last_of_revision = i + 1 == len(events) or events[i + 1].revision != event.revision
            if last_of_revision:  # a transaction's events count together
                most = max(most, len(present))
        return most

    def stop(self) -> None:
        self._stopping.set()
        with self._spawning:
            process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if self._reader is not None:
            self._reader.join(5)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _event(raw: dict[str, Any]) -> Event:
    """One event as etcdctl's JSON prints it: int64s as numbers, the PUT type (0) left out."""
    kv = raw["kv"]
    return Event(
        revision=int(kv["mod_revision"]),
        type="DELETE" if raw.get("type") == 1 else "PUT",
        key=b64decode(kv["key"]).decode(),
        value=b64decode(kv.get("value", "")),
        lease=int(kv.get("lease", 0)),
        seen=time.monotonic(),
    )


__all__ = ["PASSWORD", "PREFIX", "USER", "Cluster", "Event", "Watcher"]
