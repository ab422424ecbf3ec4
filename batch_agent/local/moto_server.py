"""moto's threaded server with HTTP keep-alive, as AWS endpoints have it.

werkzeug's development server ends every response with ``Connection: close``
(``http.server`` cannot tell where an unread request body ends), so each boto3
call to moto opened a new TCP connection and the server started a new thread for
it (in a profile of a burst of API requests, about a tenth of the API's and of the
data process's samples). Here a request's body is bounded by its ``Content-Length`` (or
its chunked encoding) and whatever the application left unread is drained after
the response, so the connection can carry the next request.
"""

from __future__ import annotations

import io
import socket
from contextlib import suppress
from typing import Any

from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wsgi import LimitedStream

from batch_agent.local.batch_runner import lower_thread_priority

# Unread body is drained in pieces of this size; a request without a parsable length ends its connection.
_DRAIN_CHUNK = 64 * 1024


class KeepAliveRequestHandler(MotoRequestHandler):
    """moto's request handler, minus the ``Connection: close`` on every response."""

    # Headers and body go out in separate writes: without this, Nagle's algorithm holds the
    # body back until the client's delayed ACK (40 ms) on a connection that stays open.
    disable_nagle_algorithm = True
    _body: Any = None
    _body_bounded = False
    _client: tuple[Any, Any] | None = None

    def setup(self) -> None:
        super().setup()
        # werkzeug, expecting to close the connection, drains the socket after each response
        # (reading until EOF, after a 10 ms wait): during a request it gets this socket, whose
        # peer is closed, instead of the client's.
        self._drained, peer = socket.socketpair()
        peer.close()
        self.server.open_connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.open_connections.discard(self.connection)  # type: ignore[attr-defined]
        self._drained.close()
        super().finish()

    def make_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().make_environ()
        self._body, self._body_bounded = environ["wsgi.input"], False
        if environ.get("wsgi.input_terminated"):
            # Chunked: werkzeug's DechunkedInput knows where the body ends.
            self._body_bounded = True
        else:
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = -1
            if length >= 0:
                self._body = environ["wsgi.input"] = LimitedStream(self.rfile, length)  # type: ignore[arg-type]  # a buffered reader
                self._body_bounded = True
        if self._body_bounded:
            self._client = (self.connection, self.rfile)
            self.connection, self.rfile = self._drained, io.BytesIO()
        return environ

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close" and self._body_bounded:
            return  # the body's end is known: the connection can carry the next request
        super().send_header(keyword, value)

    def run_wsgi(self) -> None:
        self._body, self._body_bounded, self._client = None, False, None
        try:
            super().run_wsgi()
        finally:
            if self._client is not None:
                self.connection, self.rfile = self._client
        if self.close_connection or self._body is None:
            return
        try:
            while self._body.read(_DRAIN_CHUNK):
                pass
        except (OSError, ValueError):
            self.close_connection = True


class BackendCachingDispatcher(DomainDispatcherApplication):
    """moto's dispatcher, remembering which backend serves a host.

    moto answers that on every request by listing its package's folder (a stat per
    service) and trying some 200 URL patterns, under a lock every request thread takes:
    the answer for a host never changes in a process.
    """

    def __init__(self, create_app: Any) -> None:
        super().__init__(create_app)
        self._backends: dict[str | None, Any] = {}

    def get_backend_for_host(self, host: str | None) -> Any:
        if host not in self._backends:
            self._backends[host] = super().get_backend_for_host(host)
        return self._backends[host]


class KeepAliveMotoServer(ThreadedMotoServer):
    """``ThreadedMotoServer`` whose connections stay open between requests; stop() closes them all.

    ``background``: the server's threads (each request's thread inherits it) run at the
    pipeline's lower CPU priority.
    """

    def __init__(self, ip_address: str, port: int, *, background: bool = False) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        self._background = background

    def _server_entry(self) -> None:
        if self._background:
            lower_thread_priority()
        app = BackendCachingDispatcher(create_backend_app)
        server: BaseWSGIServer = make_server(
            self._ip_address, self._port, app, True, request_handler=KeepAliveRequestHandler
        )
        server.open_connections = set()  # type: ignore[attr-defined]
        self._server = server
        self._server_ready_event.set()
        server.serve_forever()

    def stop(self) -> None:
        server = self._server
        super().stop()
        if server is not None:
            server.server_close()
        # Idle keep-alive connections would otherwise keep their threads serving this process's moto.
        for connection in list(getattr(server, "open_connections", ())):
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
