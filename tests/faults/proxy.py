"""A small asyncio TCP proxy for fault tests: it forwards to a server and can cut every
connection at once (both sides closed with a reset), the way a network failure does, or
stall them (connections stay open, nothing goes through) until it resumes."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

HOST = "127.0.0.1"
_CHUNK = 65536


class _Link:
    """One proxied connection: the client's side and the server's side."""

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server

    def abort(self) -> None:
        """Drop both sides at once, unflushed (a reset, as after a network failure)."""
        self.client.transport.abort()
        self.server.transport.abort()

    def close(self) -> None:
        """Close both sides after what was already written (one side closed normally)."""
        self.client.close()
        self.server.close()


class Proxy:
    """Forwards ``HOST:port`` to ``target_host:target_port``; :meth:`cut` breaks every link."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._port = 0
        self.accepted = 0
        """Connections accepted and forwarded since the start."""
        self.cut_total = 0
        """Connections dropped by :meth:`cut` since the start."""
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self._port}"

    @property
    def connections(self) -> int:
        """Links open now."""
        return len(self._links)

    async def start(self) -> str:
        """Listen on a free port of 127.0.0.1; returns the proxy's ``redis://`` URL."""
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self._port = self._server.sockets[0].getsockname()[1]
        return self.url

    def cut(self) -> int:
        """Reset both sides of every current connection; returns how many were cut.
        New connections are accepted again at once."""
        links = list(self._links)
        for link in links:
            link.abort()
        self._links.difference_update(links)
        self.cut_total += len(links)
        return len(links)

    def stall(self) -> None:
        """Stop forwarding: connections (new ones too) stay open and data waits, the way a
        hung network or server looks to both sides."""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again, what waited first."""
        self._flowing.set()

    async def close(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.abort()
        self._links.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Proxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()  # the server is down: the client sees a reset
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        self.accepted += 1
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, link), self._pump(up_reader, writer, link)
            )
        finally:
            if link in self._links:  # ended by one side, not by a cut
                self._links.discard(link)
                link.close()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link
    ) -> None:
        """Copy one direction until EOF or an error, then close the whole link."""
        with contextlib.suppress(OSError):  # ConnectionResetError & co after a cut
            while data := await source.read(_CHUNK):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        link.close()
