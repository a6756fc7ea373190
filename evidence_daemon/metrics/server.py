"""Serves a registry on ``metrics.listen`` with prometheus-client's own HTTP server."""

from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server

from ..errors import ConfigError
from ..i18n import _

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(_("metrics.listen: expected HOST:PORT, got {listen!r}").format(
            listen=listen))
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    """A ``Source``-shaped service for the daemon: ``start()``/``stop()``.

    A port that cannot be bound is logged, not fatal: footage keeps being archived
    without metrics, and the operators' ``up == 0`` alert says the station is not scraped.
    """

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        self.address = parse_listen(listen)
        self.registry = registry
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        return int(self._server.server_port) if self._server is not None else None

    def start(self) -> None:
        host, port = self.address
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.error(_("metrics: cannot listen on %s:%d: %s"), host, port, exc.strerror)
            return
        log.info("metrics served on http://%s:%d/metrics", host, self.port or port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
