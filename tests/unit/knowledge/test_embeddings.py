"""The OpenAI-compatible embedder turns a broken endpoint reply into EmbeddingError.

A server that answers 200 with a cut JSON body or wrong field types used to escape as
JSONDecodeError/TypeError and stop `serve` at start (the fault campaign's `garbage` mode).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from knowledge.embeddings import EmbeddingError, OpenAIEmbedder

BODIES = {
    "cut": b'{"object": "list", "data": [',
    "not_json": b"\x00\xff garbage",
    "data_not_a_list": b'{"object": "list", "data": 7, "model": "m"}',
    "embedding_not_numbers": (b'{"object": "list", "model": "m", "data": '
                              b'[{"object": "embedding", "index": 0, "embedding": "abc"}]}'),
    "no_vectors": b'{"object": "list", "model": "m", "data": []}',
}


@pytest.fixture
def server() -> Iterator[tuple[ThreadingHTTPServer, dict[str, bytes]]]:
    reply = {"body": b""}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply["body"])))
            self.end_headers()
            self.wfile.write(reply["body"])

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd, reply
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_a_broken_reply_is_an_embedding_error(
        kind: str, server: tuple[ThreadingHTTPServer, dict[str, bytes]]) -> None:
    httpd, reply = server
    reply["body"] = BODIES[kind]
    embedder = OpenAIEmbedder("m", base_url=f"http://127.0.0.1:{httpd.server_address[1]}/v1",
                              api_key="k", timeout=5.0, max_retries=0)
    with pytest.raises(EmbeddingError):
        embedder.embed_query("a question")
    with pytest.raises(EmbeddingError):
        _ = embedder.dimension
