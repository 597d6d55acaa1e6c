"""The test fakes as network services for the Compose tests, run in a container of the
bot image (its Python has the OpenTelemetry protobuf classes the receiver decodes with).

    python -m tests.container.fake_services signal-daemon CONTROL_DIR
    python -m tests.container.fake_services otlp-receiver

signal-daemon: agent/testing/signal_daemon.py on 0.0.0.0:8080 (signal-cli's HTTP API),
standing in for the `signal-cli` service, since Signal is unreachable here and the real
daemon can never deliver a message. Each file that appears in CONTROL_DIR (a read-only
bind mount the test writes to) is delivered once, in name order, as a direct message from
Alice whose text is the file's content. Every `send` the bot makes is printed to stdout as
one JSON line, so the test reads them with `docker logs`.

otlp-receiver: agent/testing/otlp_receiver.py on 0.0.0.0:4318 (OTLP/HTTP), standing in for
the collector image, which cannot be pulled here; every span it decodes is printed as one
JSON line.

The fakes listen on loopback only (right for the other tests); this module rebinds them to
all interfaces of the container's network, which only the Compose project can reach.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

HTTP_PORT = 8080
OTLP_PORT = 4318


def _print(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def signal_daemon(control: Path) -> None:
    from agent.testing import signal_daemon as fake

    fake.LOOPBACK = "0.0.0.0"
    sim = fake.FakeSignalDaemon(tcp=False)
    sim.http_port = HTTP_PORT
    sim.start()
    _print({"event": "listening", "port": HTTP_PORT})
    delivered: set[str] = set()
    reported = 0
    while True:
        for path in sorted(control.iterdir()) if control.is_dir() else []:
            if path.name not in delivered and not path.name.startswith("."):
                delivered.add(path.name)
                sim.deliver(fake.direct_message(path.read_text(encoding="utf-8")))
                _print({"event": "delivered", "file": path.name})
        sent = sim.sent("send")
        for params in sent[reported:]:
            _print({"event": "send", "message": str(params.get("message", ""))})
        reported = len(sent)
        time.sleep(0.2)


def otlp_receiver() -> None:
    from agent.testing import otlp_receiver as fake

    class AllInterfaces(fake.ThreadingHTTPServer):
        def __init__(self, _address: object, handler: type) -> None:
            super().__init__(("0.0.0.0", OTLP_PORT), handler)

    fake.ThreadingHTTPServer = AllInterfaces  # type: ignore[misc]
    with fake.OtlpReceiver() as receiver:
        _print({"event": "listening", "port": OTLP_PORT})
        reported = 0
        while True:
            spans = list(receiver.spans)
            for span in spans[reported:]:
                _print({"event": "span", **dataclasses.asdict(span)})
            reported = len(spans)
            time.sleep(0.2)


if __name__ == "__main__":
    # PID 1 in its container: without a handler SIGTERM is ignored and `down` waits for
    # its timeout before it kills.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if sys.argv[1:2] == ["signal-daemon"] and len(sys.argv) == 3:
        signal_daemon(Path(sys.argv[2]))
    elif sys.argv[1:] == ["otlp-receiver"]:
        otlp_receiver()
    else:
        sys.exit("usage: fake_services.py signal-daemon CONTROL_DIR | otlp-receiver")
