"""Split pages into overlapping chunks that keep their provenance."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from knowledge.documents import Page

DEFAULT_CHUNK_SIZE = 1000
DEFAULT_CHUNK_OVERLAP = 200


@dataclass(frozen=True, slots=True)
class Chunk:
    """One retrievable passage."""

    id: str
    """Stable id: a hash of source, page, position and text."""
    source: str
    title: str
    page: int | None
    text: str


def make_splitter(chunk_size: int = DEFAULT_CHUNK_SIZE,
                  chunk_overlap: int = DEFAULT_CHUNK_OVERLAP) -> RecursiveCharacterTextSplitter:
    if chunk_size <= 0 or not 0 <= chunk_overlap < chunk_size:
        raise ValueError(
            f"chunk overlap must be >= 0 and below the chunk size "
            f"(got size={chunk_size}, overlap={chunk_overlap})"
        )
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=["\n## ", "\n### ", "\n\n", "\n", ". ", " ", ""],
        keep_separator="start",
        strip_whitespace=True,
    )


def chunk_pages(pages: Iterable[Page], splitter: RecursiveCharacterTextSplitter) -> list[Chunk]:
    chunks: list[Chunk] = []
    for page in pages:
        for position, text in enumerate(splitter.split_text(page.text)):
            if not text.strip():
                continue
            key = f"{page.source}\x00{page.page}\x00{position}\x00{text}".encode()
            chunks.append(Chunk(
                id=hashlib.sha256(key).hexdigest()[:24],
                source=page.source,
                title=page.title,
                page=page.page,
                text=text,
            ))
    return chunks
