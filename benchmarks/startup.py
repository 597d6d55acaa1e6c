"""Start-up benchmark (PERF-3): start to ready, memory at ready, index load time.

Each run spawns the real `signal-rag serve` process (passphrase, pepper, a health port,
local embedder, extractive answerer) against the daemon simulator in a process of its own,
with one question from an already activated user waiting in the daemon's queue, and polls
`/readyz` until the first 200. Measured per run:

- start to ready: spawn to the first `/readyz` 200 (signal-cli reachable, index loaded and
  verified, circuit closed, inbox draining: the bot can answer);
- start to first answer: spawn to the simulator seeing the answer's `send`;
- resident memory at ready: VmRSS of the process and its children, from /proc.

Index load is `open_index` in a fresh process, timed apart from its imports; "cold" first
evicts the index files (only they, nobody else's) from the page cache with
posix_fadvise(DONTNEED), checked with `fincore`; Python and its libraries stay warm. (On a
virtual machine the evicted pages may still come from the host's cache.) Each round loads
cold, then warm, so every serve start after it finds the index cached, as a restart would.
A last table runs serve's own start-up steps one after another in a fresh process and
reports the seconds and resident MB each adds: what dominates start-up.

Baselines in the same run, as ratios: the interpreter alone, a bare `import agent.serve`,
and the same serve against the 5-document sample index, which separates the fixed cost of
imports and model loading from the cost of the index size. Built indexes are cached under
data/bench-cache/ keyed by corpus, embedder and chunking, so only the first run ingests.

Run: `python -m benchmarks --only startup [--startup-runs N]` (results in
benchmarks/results/startup.json). This module imports only the standard library at top
level: it is also the child process (`python -m benchmarks.startup simulator|load-index|
phases`) and must not skew what it times.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "knowledge"
CACHE_DIR = ROOT / "data" / "bench-cache"
DEFAULT_SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
TARGET_READY_S = 3.0
TARGET_RSS_MB = 400.0
TARGET_INDEX_LOAD_S = 1.0
READY_TIMEOUT_S = 180.0
ANSWER_TIMEOUT_S = 300.0
POLL_S = 0.02
USER_UUID = "00000000-0000-4000-8000-000000000001"


@dataclass(frozen=True, slots=True)
class Corpus:
    label: str
    docs: Path
    documents: int
    question: str
    """Asked once per serve run; never printed (no message text in output)."""


# --- corpora and the index cache -------------------------------------------------------

def scifact_corpus(scifact: Path, limit: int, target: Path) -> Corpus:
    from benchmarks.__main__ import write_scifact_docs

    queries = write_scifact_docs(scifact, limit, target)
    count = sum(1 for _ in target.glob("*.md"))
    return Corpus(f"scifact[:{limit}]", target, count, queries[0])


WORDS = ["cell", "protein", "gene", "expression", "tumour", "receptor", "signalling", "pathway",
         "mouse", "patient", "trial", "dose", "risk", "cohort", "mutation", "immune",
         "response", "infection", "vaccine", "tissue", "brain", "neuron", "membrane",
         "enzyme", "binding", "kinase", "therapy", "outcome", "mortality", "survival",
         "factor", "level", "increase", "decrease", "associated", "significant", "effect"]


def generated_corpus(count: int, target: Path) -> Corpus:
    """A deterministic stand-in for SciFact (~200-word abstracts) when it is absent."""
    rng = random.Random(5000)  # reproducible filler text
    target.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        title = " ".join(rng.choices(WORDS, k=8)).capitalize()
        body = " ".join(rng.choices(WORDS, k=200))
        (target / f"doc-{i:05d}.md").write_text(f"# {title}\n\n{body}.\n", encoding="utf-8")
    return Corpus(f"generated[{count}]", target, count, "Which protein increases survival?")


def samples_corpus() -> Corpus:
    questions = (ROOT / "benchmarks" / "questions.txt").read_text(encoding="utf-8").split("\n")
    count = sum(1 for p in SAMPLES.rglob("*") if p.is_file())
    return Corpus("samples", SAMPLES, count, next(q for q in questions if q.strip()))


def cache_key(corpus: Corpus, model: str) -> str:
    """Corpus content, embedder and everything ingest embeds by: a change means a rebuild."""
    from knowledge.chunking import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE
    from knowledge.index import FORMAT_VERSION
    from knowledge.ingest import EMBED_TITLE

    digest = hashlib.sha256()
    for path in sorted(p for p in corpus.docs.rglob("*") if p.is_file()):
        digest.update(path.relative_to(corpus.docs).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(repr((model, DEFAULT_CHUNK_SIZE, DEFAULT_CHUNK_OVERLAP, EMBED_TITLE,
                        FORMAT_VERSION)).encode())
    slug = "-".join("".join(c if c.isalnum() else " " for c in corpus.label).split())
    return f"{slug}-{Path(model).name}-{digest.hexdigest()[:12]}"


def cached_index(corpus: Corpus, embedder: Any) -> tuple[Path, dict[str, Any]]:
    """The corpus's index from data/bench-cache, built (with `ingest`) only when missing;
    a cached index whose dense part is of an older kind is rewritten from its vectors."""
    from knowledge.index import KnowledgeIndexError, dense_index_is_current, open_index
    from knowledge.ingest import ingest

    index_dir = CACHE_DIR / cache_key(corpus, embedder.model_name) / "index"
    try:
        cached = open_index(index_dir)
        if len(cached.manifest.documents) == corpus.documents and \
                dense_index_is_current(cached.dense):
            return index_dir, {"cached": True, "build_s": 0.0,
                               "chunks": cached.manifest.chunk_count}
    except KnowledgeIndexError:
        pass
    print(f"building the {corpus.label} index into {index_dir.parent} "
          f"({corpus.documents} documents, local embedder; minutes on 2 cores, once)",
          flush=True)
    started = time.perf_counter()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30 or done == total:
            last[0] = time.perf_counter()
            print(f"  embedded {done}/{total} chunks", flush=True)

    report = ingest(corpus.docs, index_dir, embedder, provider="local", progress=progress)
    if report.errors:
        raise RuntimeError(f"{len(report.errors)} documents of {corpus.label} failed to load")
    return index_dir, {"cached": False, "build_s": time.perf_counter() - started,
                       "chunks": report.chunks_total}


# --- measuring a process ----------------------------------------------------------------

def tree_rss_mb(pid: int) -> float:
    """VmRSS of `pid` and all its descendants, in MB (10^6 bytes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    total_kb, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb * 1024 / 1e6


def readyz(port: int) -> int | None:
    """The status of GET /readyz, or None when nothing answers yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


EMBEDDERS = ("onnx", "torch")
"""`onnx`: `signal-rag serve` as shipped; `torch`: the same serve with the
sentence-transformers embedder it had before (the baseline, `benchmarks.startup
serve-torch`)."""


def serve_command(embedder: str = "onnx") -> list[str]:
    if embedder == "torch":
        return [sys.executable, "-m", "benchmarks.startup", "serve-torch"]
    script = Path(sys.executable).with_name("signal-rag")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "agent.cli"]
    return [*command, "serve"]


def serve_torch_main() -> None:
    """Child: `signal-rag serve` with the torch embedder in place of the ONNX one.

    Patched where it is looked up: the composition root imports the name when `serve` first
    imports it (after this patch), and passes keyword options such as `max_retries`."""
    import agent.assistant
    from agent.cli import app
    from agent.settings import Settings
    from knowledge.batching import BatchingEmbedder
    from knowledge.embeddings import SentenceTransformerEmbedder

    def torch_embedder(settings: Settings, **_options: object) -> BatchingEmbedder:
        return BatchingEmbedder(SentenceTransformerEmbedder(
            settings.embeddings.model, batch_size=settings.embeddings.batch_size))

    agent.assistant.build_embedder = torch_embedder
    if "agent.wiring" in sys.modules:
        sys.modules["agent.wiring"].build_embedder = torch_embedder  # type: ignore[attr-defined]
    app(["serve"])


def clean_env() -> dict[str, str]:
    """This environment without any signal-rag setting or model key of the caller's."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SIGNAL_RAG_", "OTEL_")) and k != "OPENAI_API_KEY"}


def serve_env(tmp: Path, index_dir: Path, sim_url: str, port: int, pepper: str) -> dict[str, str]:
    from agent.testing.signal_daemon import BOT_NUMBER, BOT_UUID

    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    return {**clean_env(),
            "PYTHONPATH": str(ROOT),
            "SIGNAL_RAG_DATA_DIR": str(tmp / "data"),
            "SIGNAL_RAG_SECRETS_DIR": str(secrets_dir),
            "SIGNAL_RAG_INDEX_DIR": str(index_dir),
            "SIGNAL_RAG_LOG_LEVEL": "INFO",
            "SIGNAL_RAG_SIGNAL__URL": sim_url,
            "SIGNAL_RAG_SIGNAL__ACCOUNT": BOT_NUMBER,
            "SIGNAL_RAG_SIGNAL__BOT_UUID": BOT_UUID,
            "SIGNAL_RAG_ACCESS__PASSPHRASE": secrets.token_urlsafe(16),
            "SIGNAL_RAG_AUDIT__PEPPER": pepper,
            "SIGNAL_RAG_HEALTH__ADDR": f"127.0.0.1:{port}"}


def read_line(stream: IO[str], what: str) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise RuntimeError(f"the {what} process ended early")
    result: dict[str, Any] = json.loads(line)
    return result


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def simulator(question: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The daemon simulator in its own process, the question already queued in it."""
    sim = subprocess.Popen([sys.executable, "-m", "benchmarks.startup", "simulator"], cwd=ROOT,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                           env={**clean_env(), "PYTHONPATH": str(ROOT)})
    assert sim.stdin is not None
    assert sim.stdout is not None
    try:
        sim.stdin.write(json.dumps({"user": USER_UUID, "question": question}) + "\n")
        sim.stdin.flush()
        yield sim, str(read_line(sim.stdout, "simulator")["url"])
    finally:
        with contextlib.suppress(OSError):
            sim.stdin.write("stop\n")
            sim.stdin.close()
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()


def serve_run(index_dir: Path, question: str, embedder: str = "onnx") -> dict[str, Any]:
    """One `signal-rag serve` start: seconds to ready and to the first answer, MB at ready."""
    from agent.audit import UserHasher
    from agent.users import UserDirectory

    with tempfile.TemporaryDirectory(prefix="bench-startup-") as name, \
            simulator(question) as (sim, url):
        tmp = Path(name)
        pepper = secrets.token_hex(32)
        (tmp / "data").mkdir()
        directory = UserDirectory(tmp / "data" / "users.sqlite3")
        directory.activate(UserHasher(pepper.encode())(USER_UUID))  # the question is answered
        directory.close()
        port = free_port()
        env = serve_env(tmp, index_dir, url, port, pepper)
        log_path = tmp / "serve.log"
        with log_path.open("wb") as log:
            started = time.monotonic()
            process = subprocess.Popen(serve_command(embedder), env=env, cwd=tmp, stdout=log,
                                       stderr=subprocess.STDOUT)
        try:
            status = None
            while status != 200:
                if process.poll() is not None:
                    raise RuntimeError(f"serve exited {process.returncode} before ready; "
                                       f"log: {log_path.read_text()[-2000:]}")
                if time.monotonic() - started > READY_TIMEOUT_S:
                    raise RuntimeError(f"not ready after {READY_TIMEOUT_S:.0f} s (last {status})")
                time.sleep(POLL_S)
                status = readyz(port)
            ready_s = time.monotonic() - started
            rss_mb = tree_rss_mb(process.pid)
            assert sim.stdout is not None
            answered = read_line(sim.stdout, "simulator")
            if answered["answered_at"] is None or not answered["to_the_asker"]:
                raise RuntimeError("serve was ready but did not answer the queued question")
            answered_at = float(answered["answered_at"])
            return {"ready_s": ready_s, "rss_mb": rss_mb,
                    "first_answer_s": answered_at - started,
                    "peak_rss_mb": _peak_rss_mb(process.pid)}
        finally:
            stop(process)


def _peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
    return float("nan")


def python_run(code: str) -> float:
    """Seconds from spawning `python -c code` to its exit."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                   env={**clean_env(), "PYTHONPATH": str(ROOT)})
    return time.monotonic() - started


# --- index load in a fresh process --------------------------------------------------------

def resident_bytes(paths: list[Path]) -> int | None:
    """Bytes of these files in the page cache (`fincore`), or None without fincore."""
    if shutil.which("fincore") is None:
        return None
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES",
                          *map(str, paths)], capture_output=True, text=True, check=True)
    return sum(int(v) for v in out.stdout.split())


def evict(paths: list[Path]) -> None:
    """Drop these files' (clean) pages from the page cache; nobody else's."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def index_load_run(index_dir: Path, *, cold: bool) -> dict[str, Any]:
    files = [p for p in index_dir.rglob("*") if p.is_file()]
    resident = None
    if cold:
        evict(files)
        resident = resident_bytes(files)
    out = subprocess.run([sys.executable, "-m", "benchmarks.startup", "load-index",
                          str(index_dir)], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**clean_env(), "PYTHONPATH": str(ROOT)})
    result: dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    result["resident_before_bytes"] = resident
    result["size_bytes"] = sum(p.stat().st_size for p in files)
    return result


def load_index_main(index_dir: Path) -> None:
    """Child: time the imports, then `open_index` (verify sha256, FAISS, docstore, BM25)."""
    started = time.perf_counter()
    import faiss  # noqa: F401 - timed: open_index imports them on first use

    from knowledge.index import EmbeddingInfo, open_index
    from knowledge.lexical import import_bm25s

    import_bm25s()  # as open_index imports it: without scipy

    imported = time.perf_counter()
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    index = open_index(index_dir, EmbeddingInfo(**manifest["embedding"]))
    opened = time.perf_counter()
    print(json.dumps({"import_s": imported - started, "open_s": opened - imported,
                      "chunks": len(index.chunks), "rss_mb": tree_rss_mb(os.getpid())}))


# --- where start-up goes ----------------------------------------------------------------

def phases_run(index_dir: Path) -> list[dict[str, Any]]:
    """serve's own start-up steps, one after another in a fresh process: seconds each
    took (from spawn for the first), and the process's resident MB after each."""
    with tempfile.TemporaryDirectory(prefix="bench-phases-") as name:
        tmp = Path(name)
        env = serve_env(tmp, index_dir, "http://127.0.0.1:9", free_port(),
                        secrets.token_hex(32))
        env["SIGNAL_RAG_LOG_LEVEL"] = "WARNING"
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "benchmarks.startup", "phases"], cwd=tmp,
                             env=env, capture_output=True, text=True, check=True)
    marks: dict[str, list[float]] = json.loads(out.stdout.splitlines()[-1])
    seconds: dict[str, Any] = {"measure": "seconds"}
    memory: dict[str, Any] = {"measure": "RSS after, MB"}
    previous = started
    for phase, (at, rss) in marks.items():
        seconds[phase] = at - previous
        memory[phase] = rss
        previous = at
    seconds["total"] = previous - started
    memory["total"] = max(rss for _, rss in marks.values())
    return [seconds, memory]


def phases_main() -> None:
    """Child: the steps `signal-rag serve` takes before it listens, in its order."""
    marks: dict[str, tuple[float, float]] = {}

    def mark(phase: str) -> None:
        marks[phase] = (time.monotonic(), tree_rss_mb(os.getpid()))

    import agent.cli  # noqa: F401 - the console script's own import

    mark("import_cli")
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: F401

    from agent.assistant import build_embedder, load_knowledge
    from agent.observability.metrics import BotMetrics
    from agent.serve import build_service
    from agent.settings import load_settings
    from guards.output import warm as warm_output_guard

    mark("import_serve")
    settings = load_settings()
    embedder = build_embedder(settings, max_retries=0)
    _ = embedder.dimension
    mark("embedding_model")
    index = load_knowledge(settings, embedder, endpoint_may_be_down=True)
    mark("open_index")
    warm_output_guard()  # what serve warms in the background (the encoder is off by default)
    mark("warm_guards")
    build_service(settings, metrics=BotMetrics(), embedder=embedder, index=index)
    mark("rest_of_build_service")  # the graph, the assistant and the service parts
    print(json.dumps(marks))


# --- the simulator child ----------------------------------------------------------------

def simulator_main() -> None:
    """Child: queue the question, print the URL, print when the first answer is sent."""
    from agent.testing.signal_daemon import direct_message, fake_signal_daemon

    ask = json.loads(sys.stdin.readline())
    with fake_signal_daemon(keepalive_interval=15.0, tcp=False) as sim:
        sim.deliver(direct_message(ask["question"], source_uuid=ask["user"],
                                   source_number=None))
        print(json.dumps({"url": sim.http_url}), flush=True)
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while sim.count("send") == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        sent = sim.sent("send")
        print(json.dumps({"answered_at": time.monotonic() if sent else None,
                          "to_the_asker": bool(sent) and sent[0]["recipient"] == [ask["user"]]}),
              flush=True)
        sys.stdin.readline()  # "stop", or EOF when the benchmark is gone


# --- the benchmark ----------------------------------------------------------------------

def _stats(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def run_startup_benchmark(runs: int, scifact: Path = DEFAULT_SCIFACT,
                          documents: int = 5000) -> dict[str, Any]:
    """Everything PERF-3 asks, with its baselines; returns the rows for the tables."""
    from knowledge.embeddings import LocalEmbedder

    embedder = LocalEmbedder()  # loaded only if an index must be built (same vectors as torch)
    load_before = loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as name:
        if (scifact / "corpus.jsonl").is_file():
            big = scifact_corpus(scifact, documents, Path(name) / "docs")
        else:
            print(f"SciFact not found at {scifact}: using a generated corpus of {documents} "
                  "documents instead", flush=True)
            big = generated_corpus(documents, Path(name) / "docs")
        big_index, big_build = cached_index(big, embedder)
    small = samples_corpus()
    small_index, small_build = cached_index(small, embedder)
    for build, corpus, index in ((big_build, big, big_index), (small_build, small, small_index)):
        how = "reused from" if build["cached"] else f"built in {build['build_s']:.0f} s into"
        print(f"{corpus.label} index ({build['chunks']} chunks): {how} {index.parent}",
              flush=True)

    floor, bare, warm, cold = [], [], [], []
    small_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in EMBEDDERS}
    big_runs: dict[str, list[dict[str, Any]]] = {name: [] for name in EMBEDDERS}
    for name in EMBEDDERS:  # one unmeasured start each: libraries in the page cache
        serve_run(small_index, small.question, name)
    for i in range(runs):
        print(f"startup run {i + 1}/{runs}", flush=True)
        cold.append(index_load_run(big_index, cold=True))
        warm.append(index_load_run(big_index, cold=False))  # and the files are cached again
        floor.append(python_run("pass"))
        bare.append(python_run("import agent.serve"))
        for name in EMBEDDERS:  # interleaved, so both see the same machine
            small_runs[name].append(serve_run(small_index, small.question, name))
            big_runs[name].append(serve_run(big_index, big.question, name))
    phases = phases_run(big_index)

    def serve_row(label: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        ready = _stats([r["ready_s"] for r in rows])
        rss = _stats([r["rss_mb"] for r in rows])
        answer = _stats([r["first_answer_s"] for r in rows])
        return {"what": f"serve, {label}", "runs": len(rows),
                "ready_p50_s": ready[0], "ready_max_s": ready[1],
                "first_answer_p50_s": answer[0], "first_answer_max_s": answer[1],
                "rss_at_ready_p50_mb": rss[0], "rss_at_ready_max_mb": rss[1],
                "peak_rss_max_mb": max(r["peak_rss_mb"] for r in rows)}

    serve_rows = {name: (serve_row(f"{name}, {big.label} ({big_build['chunks']} chunks)",
                                   big_runs[name]),
                         serve_row(f"{name}, samples ({small_build['chunks']} chunks)",
                                   small_runs[name]))
                  for name in EMBEDDERS}
    big_row, small_row = serve_rows["onnx"]
    torch_row = serve_rows["torch"][0]
    floor_s, bare_s = statistics.median(floor), statistics.median(bare)
    baselines = [
        {"what": "python -c pass", "p50_s": floor_s, "max_s": max(floor),
         "big_ready_ratio": big_row["ready_p50_s"] / floor_s},
        {"what": "python -c 'import agent.serve'", "p50_s": bare_s, "max_s": max(bare),
         "big_ready_ratio": big_row["ready_p50_s"] / bare_s},
        {"what": "serve ready, samples index", "p50_s": small_row["ready_p50_s"],
         "max_s": small_row["ready_max_s"],
         "big_ready_ratio": big_row["ready_p50_s"] / small_row["ready_p50_s"]},
        {"what": "serve ready, big index, torch embedder", "p50_s": torch_row["ready_p50_s"],
         "max_s": torch_row["ready_max_s"],
         "big_ready_ratio": big_row["ready_p50_s"] / torch_row["ready_p50_s"]},
    ]
    loads = []
    for label, rows in (("warm", warm), ("cold (index files evicted)", cold)):
        open_s = _stats([r["open_s"] for r in rows])
        resident = [r["resident_before_bytes"] for r in rows]
        loads.append({"page cache": label, "runs": len(rows), "open_p50_s": open_s[0],
                      "open_max_s": open_s[1],
                      "imports_p50_s": statistics.median(r["import_s"] for r in rows),
                      "index_mb": rows[0]["size_bytes"] / 1e6,
                      "resident_before_mb": (max(resident) / 1e6 if None not in resident
                                             else "n/a"),
                      "process_rss_mb": statistics.median(r["rss_mb"] for r in rows)})
    targets = [
        _target("start to ready (p50)", big_row["ready_p50_s"], TARGET_READY_S, "s"),
        _target("start to ready (max)", big_row["ready_max_s"], TARGET_READY_S, "s"),
        _target("RSS at ready (p50)", big_row["rss_at_ready_p50_mb"], TARGET_RSS_MB, "MB"),
        _target("RSS at ready (max)", big_row["rss_at_ready_max_mb"], TARGET_RSS_MB, "MB"),
        _target("index load, warm (max)", loads[0]["open_max_s"], TARGET_INDEX_LOAD_S, "s"),
        _target("index load, cold (max)", loads[1]["open_max_s"], TARGET_INDEX_LOAD_S, "s"),
    ]
    return {"corpus": big.label, "documents": big.documents, "index": big_build,
            "index_cache": str(big_index.parent), "load_average_before": load_before,
            "load_average_after": loadavg(),
            "serve": [row for name in EMBEDDERS for row in serve_rows[name]],
            "torch": {"ready_p50_s": torch_row["ready_p50_s"],
                      "rss_at_ready_p50_mb": torch_row["rss_at_ready_p50_mb"]},
            "baselines": baselines, "index_load": loads, "phases": phases,
            "targets": targets}


def _target(what: str, value: float, limit: float, unit: str) -> dict[str, Any]:
    return {"target": f"{what} < {limit:g} {unit}", "measured": value,
            "result": "PASS" if value < limit else "FAIL"}


def print_startup(results: dict[str, Any]) -> None:
    from benchmarks.__main__ import print_table

    print(f"corpus {results['corpus']}: {results['documents']} documents; "
          f"load average {results['load_average_before']} before, "
          f"{results['load_average_after']} after")
    print_table("Start-up of `signal-rag serve` to the first /readyz 200 (PERF-3), "
                "ONNX embedder (shipped) and torch embedder (before)",
                results["serve"])
    print_table("Baselines (same run): big index's ready p50 as a ratio of each",
                results["baselines"])
    print_table("open_index in a fresh process (PERF-3: < 1 s)", results["index_load"])
    print_table("Where start-up goes: serve's steps one after another in a fresh process",
                results["phases"])
    print_table("PERF-3 targets", results["targets"])


def startup_section(runs: int, scifact: Path = DEFAULT_SCIFACT,
                    documents: int = 5000) -> dict[str, Any]:
    """Run, print the tables, write benchmarks/results/startup.json; return the results."""
    from benchmarks.machine import describe

    machine = describe()
    results = {"machine": machine, **run_startup_benchmark(runs, scifact, documents)}
    print_startup(results)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "startup.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"results: {out / 'startup.json'}")
    return results


def main() -> None:
    """Child-process entry points; the benchmark itself runs from `python -m benchmarks`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("simulator", "load-index", "phases", "serve-torch"))
    parser.add_argument("index", nargs="?", type=Path)
    args = parser.parse_args()
    if args.role == "simulator":
        simulator_main()
    elif args.role == "load-index":
        load_index_main(args.index)
    elif args.role == "serve-torch":
        serve_torch_main()
    else:
        phases_main()


if __name__ == "__main__":
    main()
