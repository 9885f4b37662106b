"""Boot a real systemd in a container (systemd-nspawn) for system tests.

The host's PID 1 is not systemd, so tests that need systemctl, units and a bus boot
their own systemd with ``systemd-nspawn`` from a Debian bookworm root that is built
once with ``mmdebstrap`` and cached.  Every :class:`Machine` boots from a fresh
copy-on-write view (overlayfs) of that cached root, so each starts clean and the
cache is never written to.

What was needed on this host (Debian 12, root, PID 1 not systemd, hybrid cgroups):

* ``--register=no``: there is no systemd-machined on the host.
* ``--keep-unit``: there is no host systemd to create a scope unit for the container.
* ``/run/systemd/inaccessible/*`` must exist on the host: nspawn bind-mounts these
  nodes over paths it masks; without them the boot half-fails.
* The root copy is an overlayfs mount (lower: the cached root; upper/work: under the
  machine's workdir).  ``cp -a`` of the ~250 MB root on ext4 (no reflink) takes
  seconds; the overlay mount takes milliseconds.  ``cp`` is kept as a fallback for
  filesystems that cannot host an overlay.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from testbed import PROJECT, needs
from testbed.engine import ENGINES

SUITE = "bookworm"
# A newer release, booted over an older one's /etc, /opt and /var: an OS update (Python 3.13,
# systemd 257 in place of 3.11 and 252).
NEWER_SUITE = "trixie"
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "ca-certificates")
# A new user's host as README's Quick start makes it: the same packages and git to clone with
# (docker.io's engine and client are the host's, bound in), cached apart from the roots above.
PRISTINE_PACKAGES = (*PACKAGES, "git")
# Bump when the way the root is made changes, so old caches are not reused.
RECIPE_VERSION = "2"
MARKER = ".testbed-complete"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DOCKER_CLIENTS = (Path("/usr/local/bin/docker"), Path("/usr/bin/docker"))
# docker compose v2 as testbed/engines.sh unpacks sid's docker-compose, and where the docker
# client looks for CLI plugins in a machine.
COMPOSE_PLUGIN = ENGINES / "compose/usr/libexec/docker/cli-plugins/docker-compose"
COMPOSE_PLUGIN_INSIDE = "/usr/local/lib/docker/cli-plugins/docker-compose"
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}
INACCESSIBLE = Path("/run/systemd/inaccessible")
# What a machine's persistent state keeps from one boot to the next, over whichever root: as on
# Flatcar, where an OS update brings a new /usr and /etc, /opt, /var and home stay.
PERSISTENT = frozenset({"etc", "opt", "var", "root", "home", "srv"})
_POLL = 0.1


class MachineError(RuntimeError):
    """The machine could not be booted or stopped."""


class CommandError(subprocess.CalledProcessError):
    """A command inside the machine failed; str() includes its stdout and stderr."""

    def __str__(self) -> str:
        cmd = " ".join(self.cmd) if isinstance(self.cmd, list | tuple) else str(self.cmd)
        return (
            f"command {cmd!r} exited with {self.returncode}\n"
            f"--- stdout ---\n{self.stdout or ''}\n--- stderr ---\n{self.stderr or ''}"
        )


# --------------------------------------------------------------------------- root


def _docker_client() -> Path:
    """The host's docker client to copy into the root (the static one first)."""
    for path in DOCKER_CLIENTS:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise MachineError(
        f"no docker client on the host (looked at {', '.join(map(str, DOCKER_CLIENTS))})"
    )


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path}:{st.st_size}:{int(st.st_mtime)}"


def _packages(pristine: bool) -> tuple[str, ...]:
    return PRISTINE_PACKAGES if pristine else PACKAGES


def _recipe_key(suite: str = SUITE, pristine: bool = False) -> str:
    """A short hash of everything that goes into the root."""
    parts = [RECIPE_VERSION, suite, *_packages(pristine), _file_key(_docker_client())]
    if HOST_CA_BUNDLE.is_file():
        parts.append(_file_key(HOST_CA_BUNDLE))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on path (so parallel test runs build the root once)."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _check(cmd: Sequence[str | os.PathLike[str]], **kwargs: object) -> str:
    """Run a host command; raise with its output if it fails."""
    proc = subprocess.run(
        [os.fspath(c) for c in cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )
    if proc.returncode != 0:
        raise CommandError(proc.returncode, [os.fspath(c) for c in cmd], proc.stdout, proc.stderr)
    return str(proc.stdout)


def _install_docker_client(root: Path) -> None:
    """Copy the host's docker client into root and prove it runs there."""
    client = _docker_client()
    dest = root / "usr/local/bin/docker"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(client, dest)
    dest.chmod(0o755)
    # /usr/bin/docker from docker.io is a Go binary linked to libc only, which
    # bookworm has; whatever it is, running it in a chroot of the root is the proof.
    try:
        _check(["chroot", root, "/usr/local/bin/docker", "--version"], timeout=60)
    except CommandError as e:
        info = subprocess.run(["file", client], capture_output=True, text=True).stdout
        raise MachineError(
            f"docker client {client} does not run in the root ({info.strip()}): {e}"
        ) from e


def _compose_plugin_bind() -> list[str]:
    """Bind docker compose into the machine read-only, when testbed/engines.sh has fetched it.

    Bound at each boot rather than copied into the cached root: the root's recipe (and so every
    cached root) stays the same whether or not the plugin is there, and the machine gets no
    66 MB copy of it.
    """
    if not COMPOSE_PLUGIN.is_file():
        return []
    return [f"--bind-ro={COMPOSE_PLUGIN}:{COMPOSE_PLUGIN_INSIDE}"]


def _install_certs(root: Path) -> None:
    """Trust what the host trusts, and point pip at it (as the host does)."""
    if HOST_CA_BUNDLE.is_file():
        dest = root / "etc/ssl/certs/ca-certificates.crt"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():
            dest.unlink()
        shutil.copyfile(HOST_CA_BUNDLE, dest)
        dest.chmod(0o644)
    (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")


def _root_name(suite: str, pristine: bool = False) -> str:
    """The cache entry of suite's root (bookworm's name predates other suites)."""
    key = _recipe_key(suite, pristine)
    if pristine:
        return f"root-pristine-{suite}-{key}"
    return f"root-{key}" if suite == SUITE else f"root-{suite}-{key}"


def _mirror() -> list[str]:
    """The host's Debian mirror for mmdebstrap (it reaches other releases the same way)."""
    if APT_SOURCES.is_file():
        for line in APT_SOURCES.read_text().splitlines():
            if line.startswith("URIs:"):
                return [line.split()[1]]
    return []  # mmdebstrap then uses the host's own sources


def build_root(cache_dir: Path, suite: str = SUITE, pristine: bool = False) -> Path:
    """A Debian root of suite with systemd, dbus, python3, python3-venv and ca-certificates.

    Made once with mmdebstrap and cached under cache_dir as ``root-<recipe hash>``
    (``root-<suite>-<recipe hash>`` for suites other than bookworm, from the host's
    mirror); reused when its marker file (written last) is there.  It is built in a temp dir
    next to the cache and renamed into place, so an interrupted build never leaves a
    half root.  The root also gets the host's docker client at /usr/local/bin/docker,
    the host's CA bundle and an /etc/pip.conf that points pip at it.  ``pristine`` roots
    (:data:`PRISTINE_PACKAGES`) are cached as ``root-pristine-<suite>-<recipe hash>``.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    packages = _packages(pristine)
    root = cache_dir / _root_name(suite, pristine)
    if (root / MARKER).is_file():
        return root
    with _locked(cache_dir / "build.lock"):
        if (root / MARKER).is_file():  # another process built it meanwhile
            return root
        # Leftovers of interrupted builds, and a root without its marker.
        for stale in cache_dir.glob(".build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        if root.exists():
            shutil.rmtree(root)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
        try:
            target = tmp / "root"
            _check(
                [
                    "mmdebstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(packages),
                    suite,
                    target,
                    *([] if suite == SUITE else _mirror()),
                ],
                timeout=900,
            )
            _install_docker_client(target)
            _install_certs(target)
            # mmdebstrap copies the host's /etc/hostname; without it the machine
            # takes the name given to nspawn (--machine).
            (target / "etc/hostname").unlink(missing_ok=True)
            (target / MARKER).write_text(f"{RECIPE_VERSION} {suite} {' '.join(packages)}\n")
            os.rename(target, root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _prune_old_roots(cache_dir, keep=root, suite=suite, pristine=pristine)
    return root


def _same_suite(path: Path, suite: str, pristine: bool = False) -> bool:
    """Whether the cached root at path is one of suite's (of any recipe), pristine or not."""
    rest = path.name.removeprefix("root-")
    if pristine:
        return rest.startswith(f"pristine-{suite}-")
    if suite == SUITE:
        return "-" not in rest
    return rest.startswith(f"{suite}-")


def _prune_old_roots(
    cache_dir: Path, keep: Path, suite: str = SUITE, pristine: bool = False
) -> None:
    """Remove suite's roots of older recipes, unless a machine still uses one as its overlay lower."""
    mounts = Path("/proc/self/mounts").read_text()
    for old in cache_dir.glob("root-*"):
        if not _same_suite(old, suite, pristine):
            continue
        if old != keep and f"lowerdir={old}," not in mounts and f"lowerdir={old} " not in mounts:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------------- inaccessible


def ensure_inaccessible() -> None:
    """Create the /run/systemd/inaccessible/* nodes nspawn bind-mounts (no host systemd)."""
    INACCESSIBLE.mkdir(parents=True, exist_ok=True)
    makers: dict[str, Callable[[Path], None]] = {
        "reg": lambda p: p.touch(),
        "dir": lambda p: p.mkdir(),
        "chr": lambda p: os.mknod(p, 0o000 | stat.S_IFCHR, os.makedev(0, 0)),
        "blk": lambda p: os.mknod(p, 0o000 | stat.S_IFBLK, os.makedev(0, 0)),
        "fifo": lambda p: os.mkfifo(p),
        "sock": _make_socket_node,
    }
    for name, make in makers.items():
        path = INACCESSIBLE / name
        if path.exists() or path.is_symlink():
            continue
        with contextlib.suppress(FileExistsError):  # a parallel start made it
            make(path)
        os.chmod(path, 0o000)


def _make_socket_node(path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))


# --------------------------------------------------------------------------- wheels


def _newest_mtime(paths: Iterable[Path]) -> float:
    newest = 0.0
    for p in paths:
        if p.is_dir():
            for sub in p.rglob("*"):
                if sub.is_file() and "__pycache__" not in sub.parts:
                    newest = max(newest, sub.stat().st_mtime)
        elif p.is_file():
            newest = max(newest, p.stat().st_mtime)
    return newest


_COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
)


def python_wheels(project_dir: Path, out: Path) -> Path:
    """Wheels of the project and its dependencies in out (``pip wheel``), for offline installs.

    Inside a machine: ``python3 -m venv /opt/updater && /opt/updater/bin/pip install
    --no-index --find-links /wheels updater`` with out bound at /wheels.  Skipped when out
    already has the project's wheel newer than pyproject.toml and every file of its
    package.  The project is copied to a temp dir first so the build leaves no build/
    or *.egg-info in it.  Returns out.
    """
    project_dir = Path(project_dir).resolve()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pyproject = project_dir / "pyproject.toml"
    name = tomllib.loads(pyproject.read_text())["project"]["name"]
    module = name.replace("-", "_").replace(".", "_")
    built = [w.stat().st_mtime for w in out.glob(f"{module}-*.whl")]
    if built and max(built) > _newest_mtime([pyproject, project_dir / module]):
        return out
    with tempfile.TemporaryDirectory(prefix="wheel-src-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(project_dir, src, ignore=_COPY_IGNORE, symlinks=True)
        for old in out.glob(f"{module}-*.whl"):
            old.unlink()
        _check(
            [sys.executable, "-m", "pip", "wheel", "--quiet", str(src), "-w", str(out)], timeout=600
        )
    return out


def install_sh_wheels(project_dir: Path, out: Path) -> Path:
    """What ``install.sh`` needs to install offline (``PIP_NO_INDEX=1 PIP_FIND_LINKS=out``).

    The project's wheels (:func:`python_wheels`), the build backend (install.sh builds the
    checkout) and, for each compiled wheel among them, its project's pure wheel
    (py3-none-any) of the same version, which install.sh puts in its place.  Returns out.
    """
    out = python_wheels(project_dir, out)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _check([*pip, "download", "-q", "--only-binary=:all:", "setuptools", "-d", out], timeout=600)
    for wheel in out.glob("*.whl"):
        name, version = wheel.name.split("-")[:2]
        if wheel.name.endswith("-none-any.whl") or name.lower() == "pyyaml":  # install.sh drops it
            continue
        pure = ["--platform", "any", "--implementation", "py", "--abi", "none"]
        _check(
            [*pip, "download", "-q", "--no-deps", "--only-binary=:all:", *pure]
            + ["-d", out, f"{name}=={version}"],
            timeout=600,
        )
    return out


# -------------------------------------------------------------------------- machine


def _comm(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def _children(pid: int) -> list[int]:
    """Pids whose parent is pid (scans /proc: children files need CONFIG_PROC_CHILDREN)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            data = Path(f"/proc/{entry}/stat").read_text()
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            ppid = int(data[data.rindex(")") + 2 :].split()[1])
            if ppid == pid:
                kids.append(int(entry))
    return kids


def _alive(pid: int) -> bool:
    """Whether pid exists and is not a zombie."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return data[data.rindex(")") + 2 :].split()[0] != "Z"


def _tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


class Machine:
    """A full systemd booted with systemd-nspawn from a fresh copy-on-write view of the root.

    ``binds`` are (host path, path inside the machine) pairs, bound read-write, e.g.
    ``(docker_sock, "/run/docker.sock")`` or ``(wheel_dir, "/wheels")``.  Files are
    kept under ``workdir/name`` (the root view, the overlay's upper and work dirs) and
    removed by :meth:`stop`; nspawn's output (the container's console) goes to
    ``workdir/name.log``, which is kept.

    ``state``, a directory, keeps the machine's writes to /etc, /opt, /var and homes
    (:data:`PERSISTENT`) across boots: the overlay's upper dir lives there and is reused by
    the next machine given the same state, over the same root or another one (an OS update:
    boot a newer release's root with the state an older one left).  Writes elsewhere (/usr)
    are dropped at the next boot, as a new OS image drops them.  ``hidden`` paths are
    over-mounted with an inaccessible node (``--inaccessible``), as if the root lacked them;
    ``umount PATH`` inside brings one back.
    """

    def __init__(
        self,
        root_cache: Path,
        workdir: Path,
        name: str,
        binds: Sequence[tuple[Path, str]] = (),
        state: Path | None = None,
        hidden: Sequence[str] = (),
    ) -> None:
        self.root_cache = Path(root_cache)
        self.name = name
        self.dir = Path(workdir) / name
        self.binds = list(binds)
        self.state_dir = None if state is None else Path(state)
        self.hidden = list(hidden)
        self.log_path = Path(workdir) / f"{name}.log"
        self.state = ""  # what is-system-running answered at boot
        self._root = self.dir / "root"
        self._overlay = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._leader: int | None = None

    # -- properties

    @property
    def root(self) -> Path:
        """The running copy's directory on the host."""
        return self._root

    @property
    def leader(self) -> int:
        """The pid (on the host) of the machine's systemd."""
        if self._leader is None:
            raise MachineError(f"machine {self.name} is not running")
        return self._leader

    # -- lifecycle

    def _upper_and_work(self) -> tuple[Path, Path]:
        """The overlay's upper and work dirs: fresh ones, or the persistent state's."""
        if self.state_dir is None:
            upper, work = self.dir / "upper", self.dir / "work"
            upper.mkdir(parents=True)
            work.mkdir(parents=True)
            return upper, work
        upper, work = self.state_dir / "upper", self.state_dir / "work"
        upper.mkdir(parents=True, exist_ok=True)
        for entry in upper.iterdir():
            if entry.name not in PERSISTENT:  # the last boot's /usr, /tmp, ...: not state
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        return upper, work

    def _make_root(self) -> None:
        """The machine's root: an overlay on the cached root, or a copy if that fails."""
        self._root.mkdir(parents=True)
        upper, work = self._upper_and_work()
        opts = f"lowerdir={self.root_cache},upperdir={upper},workdir={work}"
        mount = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(self._root)],
            capture_output=True,
            text=True,
        )
        if mount.returncode == 0:
            self._overlay = True
            return
        if self.state_dir is not None:
            raise MachineError(f"cannot mount the overlay for {self.name}: {mount.stderr.strip()}")
        # No overlay here (e.g. workdir on overlayfs or tmpfs quirks): a full copy.
        self._root.rmdir()
        _check(["cp", "-a", "--reflink=auto", self.root_cache, self._root], timeout=300)

    def start(self, timeout: float = 60) -> None:
        """Boot the machine; return once systemd says running or degraded."""
        if self._proc is not None:
            raise MachineError(f"machine {self.name} already started")
        if not (self.root_cache / MARKER).is_file():
            raise MachineError(f"{self.root_cache} is not a complete root (see build_root)")
        ensure_inaccessible()
        if self.dir.exists():
            self._remove_dir()
        self.dir.mkdir(parents=True)
        deadline = time.monotonic() + timeout
        try:
            self._make_root()
            self._boot(deadline)
        except BaseException:
            self.stop()
            raise

    def _boot(self, deadline: float) -> None:
        cmd = [
            "systemd-nspawn",
            "--quiet",
            f"--directory={self._root}",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--machine={self.name}",
        ]
        cmd += [f"--bind={Path(host).resolve()}:{inside}" for host, inside in self.binds]
        cmd += _compose_plugin_bind()
        cmd += [f"--inaccessible={path}" for path in self.hidden]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._leader = self._find_leader(deadline)
        self._wait_booted(deadline)

    def wait_down(self, timeout: float = 60) -> int:
        """Wait for the machine to end by itself (a poweroff, or a reboot: with --keep-unit
        nspawn exits 133 and leaves the boot to its caller); nspawn's exit status."""
        if self._proc is None:
            raise MachineError(f"machine {self.name} is not running")
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired as err:
            raise self._fail(f"still up {timeout:g} s after being asked to go down") from err
        leader, self._leader = self._leader, None
        end = time.monotonic() + 10
        while leader is not None and _alive(leader) and time.monotonic() < end:
            time.sleep(_POLL / 10)
        return code

    def boot_again(self, timeout: float = 60) -> None:
        """After `wait_down`, boot the same root again: every write of the last boot is kept,
        as across a reboot of a host with a disk."""
        if self._proc is None or self._proc.poll() is None:
            raise MachineError(f"machine {self.name} has not gone down")
        self._boot(time.monotonic() + timeout)

    def _fail(self, why: str) -> MachineError:
        return MachineError(
            f"machine {self.name}: {why}\n--- nspawn log tail ---\n{_tail(self.log_path)}"
        )

    def _find_leader(self, deadline: float) -> int:
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise self._fail(f"systemd-nspawn exited with {self._proc.returncode}")
            for pid in _children(self._proc.pid):
                if _comm(pid) == "systemd":
                    return pid
            if time.monotonic() > deadline:
                raise self._fail("no systemd child of systemd-nspawn in time")
            time.sleep(_POLL)

    def _wait_booted(self, deadline: float) -> None:
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise self._fail(f"systemd-nspawn exited with {self._proc.returncode}")
            proc = self.run("systemctl", "is-system-running", check=False, timeout=10)
            self.state = proc.stdout.strip()
            if self.state in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                raise self._fail(f"not booted in time (is-system-running: {self.state!r})")
            time.sleep(_POLL)

    def stop(self, timeout: float = 30) -> None:
        """Shut the machine down (SIGTERM to nspawn, SIGKILL if need be) and remove its copy."""
        proc, self._proc = self._proc, None
        leader, self._leader = self._leader, None
        if proc is not None and proc.poll() is None:
            # nspawn turns SIGTERM into a clean poweroff of the systemd inside.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Killing the container's PID 1 kills its whole pid namespace;
                # killing nspawn alone would leave the container running.
                if leader is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(leader, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        if leader is not None:
            # SIGKILL works asynchronously: do not return while the machine's systemd
            # (and with it its pid namespace) is still there.
            deadline = time.monotonic() + 10
            while _alive(leader) and time.monotonic() < deadline:
                time.sleep(_POLL / 10)
        # nspawn leaves this (empty) dir behind when /run is not a tmpfs on the host.
        with contextlib.suppress(OSError):
            (Path("/run/systemd/nspawn/propagate") / self.name).rmdir()
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self._root.is_mount() or self._overlay:
            umount = subprocess.run(["umount", str(self._root)], capture_output=True, text=True)
            if umount.returncode != 0 and self._root.is_mount():
                subprocess.run(["umount", "--lazy", str(self._root)], capture_output=True)
            self._overlay = False
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Machine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- inside

    def run(
        self,
        *cmd: str,
        check: bool = True,
        timeout: float = 120,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run cmd inside the machine (nsenter into all its namespaces), capture its output."""
        full = ["nsenter", "-t", str(self.leader), "-a", *cmd]
        proc = subprocess.run(
            full,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(DEFAULT_ENV) if env is None else env,
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, list(cmd), proc.stdout, proc.stderr)
        return proc

    def _host_path(self, path: str) -> Path:
        """Where path inside the machine is on the host.

        Through /proc/LEADER/root while running (which also reaches the machine's own
        mounts: /tmp, /run, ...), else through the root copy.  Symlinks are resolved
        against the machine's root, not the host's.
        """
        base = Path(f"/proc/{self._leader}/root") if self._leader is not None else self._root
        if not path.startswith("/"):
            raise ValueError(f"{path!r}: need an absolute path inside the machine")
        todo = [p for p in path.split("/") if p]
        done: list[str] = []
        hops = 0
        while todo:
            part = todo.pop(0)
            if part == ".":
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            here = base.joinpath(*done, part)
            if here.is_symlink():
                hops += 1
                if hops > 40:
                    raise OSError(f"too many symlinks in {path}")
                target = os.readlink(here)
                if target.startswith("/"):
                    done = []
                todo = [p for p in target.split("/") if p] + todo
                continue
            done.append(part)
        return base.joinpath(*done)

    def write_file(self, path: str, content: str, mode: int = 0o644) -> None:
        """Write content to path inside the machine (parents made as needed)."""
        dest = self._host_path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(content)
        dest.chmod(mode)

    def read_file(self, path: str) -> str:
        """The text of path inside the machine."""
        return self._host_path(path).read_text()

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll predicate until it holds; TimeoutError naming what if it does not in time."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"machine {self.name}: timed out after {timeout}s waiting for {what}"
                )
            time.sleep(_POLL)


@contextmanager
def updater_machine(
    name: str, workdir: Path, wheels: Path, binds: list[tuple[Path, str]]
) -> Iterator[Machine]:
    """A booted systemd with the updater installed from wheels, units/ installed, no timer."""
    needs("systemd-nspawn", "mmdebstrap")
    cache = Path(os.environ.get("UPDATER_TEST_CACHE", "/var/cache/updater-tests"))
    with Machine(build_root(cache), workdir, name, [*binds, (wheels, "/wheels")]) as machine:
        machine.run("python3", "-m", "venv", "/opt/updater")
        machine.run(
            "/opt/updater/bin/pip",
            "install",
            "-q",
            "--no-index",
            "--find-links",
            "/wheels",
            "updater",
        )
        machine.write_file(
            "/etc/systemd/system/updater.service", (PROJECT / "units/updater.service").read_text()
        )
        machine.run("systemctl", "daemon-reload")
        yield machine
