"""The signal-cli reachability check against a hung and a lying daemon (issue 11): the
campaign's fault proxy in front of the daemon simulator, the real HTTP transport.

A daemon that answers `200 OK` with garbage is not reachable (it used to pass, since the
check only looked at the status of `GET /api/v1/check`), and a hung one is reported
within the check's own time limit, each with a content-free reason for /readyz."""

from __future__ import annotations

import time

from agent.signal import create_transport
from agent.signal.client import HttpTransport
from agent.testing.signal_daemon import FakeSignalDaemon
from tests.integration.faults.fault_proxy import FaultProxy


async def test_the_check_needs_a_json_rpc_version_reply(sim: FakeSignalDaemon) -> None:
    assert sim.http_port is not None
    proxy = FaultProxy(sim.http_port)
    transport = create_transport(f"http://{proxy.address}", timeout=0.5)
    assert isinstance(transport, HttpTransport)
    try:
        assert await transport.check() and transport.check_error is None
        proxy.set("garbage")  # 200 OK, a JSON body cut short
        assert not await transport.check()
        assert transport.check_error == "SignalProtocolError"
        proxy.set("hang")
        started = time.monotonic()
        assert not await transport.check()
        assert transport.check_error in {"Timeout", "SignalTimeoutError"}
        assert time.monotonic() - started < 5.0  # the call timeout, not a hang
        proxy.set("down")
        assert not await transport.check()
        assert transport.check_error == "SignalNetworkError"
        proxy.set("up")
        assert await transport.check() and transport.check_error is None
    finally:
        await transport.aclose()
        proxy.close()
