from pathlib import Path

import pytest

from knowledge.chunking import chunk_pages, make_splitter
from knowledge.documents import DocumentError, Page, discover, load

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "knowledge"


def test_markdown_title_from_first_heading(tmp_path: Path):
    path = tmp_path / "notes.md"
    path.write_text("Intro line\n\n# Real Title\n\nBody", encoding="utf-8")
    [page] = load(path, "notes.md")
    assert page.title == "Real Title"
    assert page.page is None


def test_text_title_from_file_name(tmp_path: Path):
    path = tmp_path / "release-notes.txt"
    path.write_text("hello", encoding="utf-8")
    assert load(path, "release-notes.txt")[0].title == "Release notes"


def test_html_drops_script_and_style_and_keeps_title():
    [page] = load(EXAMPLES / "operations.html", "operations.html")
    assert "sentinel" not in page.text
    assert page.title.startswith("Running signal-rag")
    assert "SIGNAL_RAG_DATA_DIR" in page.text


def test_pdf_keeps_page_numbers_and_metadata_title():
    pages = load(EXAMPLES / "security-overview.pdf", "security-overview.pdf")
    assert [p.page for p in pages] == list(range(1, len(pages) + 1))
    assert pages[0].title == "signal-rag security overview"
    assert "2000 characters" in " ".join(p.text for p in pages)


def test_broken_pdf_names_the_file(tmp_path: Path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    with pytest.raises(DocumentError, match=r"broken\.pdf"):
        load(path, "broken.pdf")


def test_discover_skips_hidden_and_unsupported(tmp_path: Path):
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "secret.md").write_text("x")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "a.md").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("y")
    assert [p.relative_to(tmp_path).as_posix() for p in discover(tmp_path)] == ["a.md", "sub/b.txt"]


def test_chunks_overlap_and_keep_provenance():
    text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(60))
    page = Page(source="doc.md", title="Doc", text=text, page=3)
    chunks = chunk_pages([page], make_splitter(300, 60))
    assert len(chunks) > 3
    assert all(len(c.text) <= 300 for c in chunks)
    assert all((c.source, c.title, c.page) == ("doc.md", "Doc", 3) for c in chunks)
    assert len({c.id for c in chunks}) == len(chunks)
    # consecutive chunks share text (the overlap)
    assert chunks[0].text[-30:].split()[-1] in chunks[1].text


def test_invalid_chunking_is_rejected():
    with pytest.raises(ValueError, match="overlap"):
        make_splitter(100, 100)


# unreadable text ---------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"\xff\xfe\x00\x00\x9c\x80\xc3\x28\x00\xa0\xa1",          # invalid UTF-8 and NULs
    "Widgets are blue.".encode("utf-16-le"),                   # UTF-16 read as UTF-8
    bytes(range(256)) * 4,                                     # a binary file
])
def test_mostly_invalid_text_is_reported_as_unreadable_not_indexed(
        tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "garbage.txt"
    path.write_bytes(raw)
    with pytest.raises(DocumentError, match=r"garbage\.txt: unreadable"):
        load(path, "garbage.txt")


def test_a_few_stray_bytes_are_tolerated_and_control_characters_removed(tmp_path: Path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Caf\xe9 opens at nine.\x00 Widgets are blue.".encode("latin-1"))
    [page] = load(path, "latin1.txt")
    assert "\x00" not in page.text and "\ufffd" in page.text
    assert "Widgets are blue." in page.text


def test_an_html_page_of_garbage_is_unreadable(tmp_path: Path):
    path = tmp_path / "page.html"
    path.write_bytes(b"<html><body>" + bytes(range(1, 32)) * 8 + b"</body></html>")
    with pytest.raises(DocumentError, match="unreadable"):
        load(path, "page.html")
