"""A dummy /run/systemd/private: just enough D-Bus for Podman 4.3.1's auto-update.

go-systemd dials it twice (a call connection and a signal connection), authenticates with SASL
EXTERNAL and, on the signal connection, calls org.freedesktop.DBus.AddMatch and waits for the
reply. In dry-run nothing else is called; every method call gets an empty METHOD_RETURN.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

SYSTEMD_PRIVATE = Path("/run/systemd/private")
METHOD_CALL, NO_REPLY_EXPECTED = 1, 0x1
_MEMBER = re.compile(rb"\x03\x01s\x00....([A-Za-z0-9_]+)\x00", re.S)


def systemd_bus_reachable() -> bool:
    """Whether a real systemd answers on /run/systemd/private."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(SYSTEMD_PRIVATE))
            return True
        except OSError:
            return False


def sasl_answer(line: bytes) -> bytes | None:
    """The server's answer to one SASL line; None for BEGIN (the messages start)."""
    line = line.lstrip(b"\0")
    if line == b"AUTH":
        return b"REJECTED EXTERNAL\r\n"
    if line.startswith(b"AUTH "):
        return b"OK 0123456789abcdef0123456789abcdef\r\n"
    if line.startswith(b"NEGOTIATE_UNIX_FD"):
        return b"AGREE_UNIX_FD\r\n"
    if line.startswith(b"BEGIN"):
        return None
    return b"ERROR\r\n"


def method_return(serial: int, reply_to: int) -> bytes:
    """An empty METHOD_RETURN (little-endian) to message `reply_to`."""
    reply = b"l\x02\x01\x01" + struct.pack("<III", 0, serial, 8)
    return reply + b"\x05\x01u\x00" + struct.pack("<I", reply_to)  # REPLY_SERIAL


class DummySystemdBus:
    """Serves the dummy bus on `path` from threads; `calls` counts the members called."""

    def __init__(self, path: Path = SYSTEMD_PRIVATE) -> None:
        self.path = path
        self.calls: Counter[str] = Counter()
        self.connections = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(path))
        self._sock.listen(64)
        self._sock.settimeout(0.2)  # so that the accept loop sees stop()
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
        buf, authed = b"", False
        serials = iter(range(1, 1 << 31))
        try:
            while not self._stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                if not authed:
                    buf, authed = self._authenticate(conn, buf)
                if authed:
                    buf = self._answer_calls(conn, buf, serials)
        except OSError:
            return
        finally:
            conn.close()

    @staticmethod
    def _authenticate(conn: socket.socket, buf: bytes) -> tuple[bytes, bool]:
        """Answer the complete SASL lines in `buf`; what is left, and whether BEGIN came."""
        while b"\r\n" in buf:
            line, buf = buf.split(b"\r\n", 1)
            answer = sasl_answer(line)
            if answer is None:
                return buf, True
            conn.sendall(answer)
        return buf, False

    def _answer_calls(self, conn: socket.socket, buf: bytes, serials: Iterator[int]) -> bytes:
        """Record and answer the complete messages in `buf`; what is left of it."""
        while len(buf) >= 16:
            order = "<" if buf[:1] == b"l" else ">"
            kind, flags = buf[1], buf[2]
            body_len, msg_serial, fields_len = struct.unpack(order + "III", buf[4:16])
            header_len = 16 + fields_len + (-fields_len % 8)
            if len(buf) < header_len + body_len:
                break
            header, buf = buf[16:header_len], buf[header_len + body_len :]
            member = _MEMBER.search(header)
            self.calls[member.group(1).decode() if member else "?"] += 1
            if kind == METHOD_CALL and not flags & NO_REPLY_EXPECTED:
                conn.sendall(method_return(next(serials), msg_serial))
        return buf

    def stop(self) -> None:
        """Stop serving and remove the socket."""
        self._stop.set()
        self._sock.close()
        self._thread.join(timeout=5)
        with contextlib.suppress(OSError):
            self.path.unlink()
