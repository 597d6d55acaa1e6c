"""The fault campaign (issue 11, docs/reliability.md): `serve` against failing
dependencies and damaged state."""
