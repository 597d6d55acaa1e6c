"""Optional extras of the package: a command that needs one says which, in one line.

The bot itself (`serve`, `ask`, `chat`, `ingest`) needs none of them. The model export
needs torch and sentence-transformers (`export`), the retrieval evals pytrec_eval
(`eval`), and PNG/SVG drawing matplotlib (`draw`); `dev` pulls all of them.
"""

from __future__ import annotations

import importlib


class MissingExtraError(ImportError):
    """A command's optional dependencies are not installed; the CLI exits 2 with this."""

    def __init__(self, extra: str, purpose: str, module: str) -> None:
        super().__init__(f"{purpose} needs the '{extra}' extra ({module} is not installed): "
                         f"pip install 'signal-rag[{extra}]'")
        self.extra = extra


def require(extra: str, purpose: str, *modules: str) -> None:
    """Import `modules` (a command is about to use them) or raise MissingExtraError."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise MissingExtraError(extra, purpose, module) from exc
