"""Fakes of the bot's neighbours for tests, benchmarks and demos: the signal-cli daemon
simulator, a loopback OpenAI-compatible server, an OTLP receiver and a deterministic
embedder. They live in the package (not under tests/) so `benchmarks/` and `scripts/` can
use them; no runtime module imports them (`make lint` checks this with import-linter).
"""
