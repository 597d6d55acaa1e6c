"""Load documents (Markdown, text, HTML, PDF) into pages that keep source, title and page.

Why our own loaders: LangChain's community loaders pull in heavy optional dependencies and
lose the title/page we cite; these are thin wrappers over `pypdf` and `beautifulsoup4`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text", ".html", ".htm", ".pdf"})


class DocumentError(ValueError):
    """A document could not be read; the message names the file and the reason."""


@dataclass(frozen=True, slots=True)
class Page:
    """A unit of text with the provenance a citation needs."""

    source: str
    """Path relative to the ingested folder (or a URL), used in citations."""
    title: str
    text: str
    page: int | None = None
    """1-based page number for PDFs; None for formats without pages."""


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def discover(root: Path) -> Iterator[Path]:
    """Yield supported files under `root` in a stable order, skipping hidden files."""
    if root.is_file():
        if root.suffix.lower() in SUPPORTED_SUFFIXES:
            yield root
        return
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
            yield path


MAX_UNREADABLE_SHARE = 0.3
"""Above this share of replacement and control characters (among the non-blank ones) a
text is not a document but bytes of another kind or encoding: it is reported, not indexed.
A few stray bytes (a Latin-1 accent, a NUL) are tolerated; control characters are removed."""
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def unreadable_share(text: str) -> float:
    """The share of U+FFFD and control characters among the non-blank characters."""
    visible = [char for char in text if not char.isspace()]
    if not visible:
        return 0.0
    bad = sum(1 for char in visible if char == "\ufffd" or _CONTROL.match(char))
    return bad / len(visible)


def _readable(pages: list[Page], source: str) -> list[Page]:
    """The pages with their control characters removed; DocumentError when the text is
    mostly replacement or control characters (invalid UTF-8, a binary file)."""
    kept = [page for page in pages if unreadable_share(page.text) <= MAX_UNREADABLE_SHARE]
    if pages and not kept:
        raise DocumentError(f"{source}: unreadable (mostly invalid UTF-8 or control "
                            "characters; save it as UTF-8 text)")
    return [Page(source=page.source, title=_CONTROL.sub("", page.title),
                 text=_CONTROL.sub("", page.text), page=page.page) for page in kept]


def load(path: Path, source: str) -> list[Page]:
    """Read one file into pages; raise DocumentError with a clear reason on failure."""
    return _readable(_load(path, source), source)


def _load(path: Path, source: str) -> list[Page]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".pdf":
            return _load_pdf(path, source)
        raw = path.read_bytes().decode("utf-8", errors="replace")
    except DocumentError:
        raise
    except Exception as exc:  # a broken file must name itself, whatever the parser raised
        raise DocumentError(f"{source}: cannot read ({type(exc).__name__}: {exc})") from exc
    if suffix in {".html", ".htm"}:
        return [_load_html(raw, source, path)]
    if suffix in {".md", ".markdown"}:
        return [Page(source=source, title=_markdown_title(raw) or _title_from_name(path), text=raw)]
    return [Page(source=source, title=_title_from_name(path), text=raw)]


def _title_from_name(path: Path) -> str:
    return path.stem.replace("-", " ").replace("_", " ").strip().capitalize() or path.name


_MD_HEADING = re.compile(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _markdown_title(text: str) -> str | None:
    match = _MD_HEADING.search(text)
    return match.group(1).strip() if match else None


_BLOCK_TAGS = ["p", "div", "section", "article", "header", "footer", "li", "tr", "pre",
               "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "dt", "dd", "table", "ul", "ol"]


def _load_html(raw: str, source: str, path: Path) -> Page:
    from bs4 import BeautifulSoup  # imported lazily: only HTML ingest needs it

    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    if not title:
        heading = soup.find("h1")
        title = heading.get_text(strip=True) if heading else ""
    for block in soup.find_all(_BLOCK_TAGS):
        block.append("\n\n")  # keep paragraph breaks; inline tags stay inside their sentence
    for br in soup.find_all("br"):
        br.replace_with("\n")
    body = soup.body or soup
    text = body.get_text()
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
    return Page(source=source, title=title or _title_from_name(path), text=text)


def _load_pdf(path: Path, source: str) -> list[Page]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path)
        meta_title = reader.metadata.title if reader.metadata else None
        title = str(meta_title).strip() if meta_title else _title_from_name(path)
        pages = []
        for number, pdf_page in enumerate(reader.pages, start=1):
            text = (pdf_page.extract_text() or "").strip()
            if text:
                pages.append(Page(source=source, title=title, text=text, page=number))
    except (PyPdfError, ValueError, KeyError, OSError) as exc:
        raise DocumentError(f"{source}: not a readable PDF ({type(exc).__name__}: {exc})") from exc
    return pages
