"""The health server (OBS-5): `/healthz`, `/readyz` and `/metrics` on one small HTTP port.

`/healthz` says the process and its event loop are alive (a stuck loop cannot answer it).
`/readyz` runs the readiness checks the service provides, each with a time limit, and
answers 200 only when all pass, with each check's status in a JSON body. `/metrics` is the
Prometheus exposition. aiohttp runs it inside the bot's own event loop; by default it
listens on loopback only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict

from aiohttp import web

from agent.observability.metrics import PROMETHEUS_CONTENT_TYPE, BotMetrics
from agent.observability.readiness import Check

DEFAULT_ADDR = "127.0.0.1:8787"
CHECK_TIMEOUT_S = 2.0

Readiness = Callable[[], Awaitable[Mapping[str, Check]]]


def parse_addr(addr: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port); a clear ValueError otherwise."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"health address must be host:port, got {addr!r}")
    return host.strip("[]"), int(port)


class HealthServer:
    def __init__(self, addr: str, readiness: Readiness, metrics: BotMetrics | None = None,
                 *, check_timeout: float = CHECK_TIMEOUT_S) -> None:
        self.host, self.port = parse_addr(addr)
        self._readiness = readiness
        self._metrics = metrics
        self._timeout = check_timeout
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # an ephemeral port was asked for: report the real one
            server = site._server  # aiohttp exposes the bound socket only here
            assert isinstance(server, asyncio.Server)
            self.port = int(server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _request: web.Request) -> web.Response:
        try:
            checks = dict(await asyncio.wait_for(self._readiness(), self._timeout))
        except TimeoutError:
            checks = {"readiness": Check(False, "checks timed out")}
        except Exception as exc:  # noqa: BLE001 - a failing check means not ready, not a 500
            checks = {"readiness": Check(False, f"check failed: {type(exc).__name__}")}
        ready = bool(checks) and all(check.ok for check in checks.values())
        body = {"status": "ready" if ready else "not_ready",
                "checks": {name: asdict(check) for name, check in checks.items()}}
        return web.Response(text=json.dumps(body), status=200 if ready else 503,
                            content_type="application/json")

    async def _metrics_page(self, _request: web.Request) -> web.Response:
        if self._metrics is None:
            return web.Response(status=404, text="metrics are off\n")
        return web.Response(body=self._metrics.exposition(),
                            headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})
