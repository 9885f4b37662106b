"""A TCP proxy on 127.0.0.1 that adds a round-trip time, in front of the registry."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from bench.launcher import CHILD_TIMEOUT


class DelayProxy:
    """Forwards to 127.0.0.1:`upstream_port` as if over a link with round-trip time `rtt`.

    The model: a new connection costs one RTT before its first byte reaches the server (the
    TCP handshake), and every chunk read in either direction is delivered RTT/2 later (so a
    request and its answer cost one RTT). Order is kept. `rtt` applies to connections accepted
    after it is set. `connections` counts the connections accepted (reset it per run).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rtt = 0.0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._main, name="delay-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._server is None:
            raise RuntimeError("the delaying proxy did not start")
        self.port: int = self._server.sockets[0].getsockname()[1]

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the registry part of a reference through the proxy."""
        return f"127.0.0.1:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=256)
        self._ready.set()

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
        pumps = asyncio.gather(
            self._pump(reader, up_writer, rtt / 2, handshake_done),
            self._pump(up_reader, writer, rtt / 2, 0.0),
        )
        try:
            await asyncio.wait_for(pumps, CHILD_TIMEOUT)
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
        """Copy reader to writer, each chunk `delay` later (and not before `not_before`)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        task = asyncio.ensure_future(self._deliver(queue, writer))
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

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        """Write each queued chunk at its time; an empty chunk is the end of the stream."""
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

    def stop(self) -> None:
        """Close the server and stop its event loop."""
        self._loop.call_soon_threadsafe(self._close)
        self._thread.join(timeout=5)

    def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._loop.stop()
