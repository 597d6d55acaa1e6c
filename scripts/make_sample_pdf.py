"""Generate examples/knowledge/security-overview.pdf, the bundled sample PDF.

The sample knowledge base needs one real PDF so that PDF ingestion (pypdf text
extraction, page numbers in citations) is exercised by the offline demo and the
retrieval evaluation; generating it from this script keeps its text reviewable in
the repository and the bytes reproducible (``invariant=1``), so re-running the
script on an unchanged source leaves the checked-in file identical.

Usage: python scripts/make_sample_pdf.py [OUTPUT]   (needs ``reportlab``)
"""

from __future__ import annotations

import sys
from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import ListFlowable, ListItem, Paragraph, SimpleDocTemplate, Spacer

TITLE = "signal-rag security overview"
DEFAULT_OUTPUT = (Path(__file__).resolve().parent.parent / "examples" / "knowledge"
                  / "security-overview.pdf")

# Each section is (heading, [paragraph or list of bullet strings, ...]).
# Plain ASCII only: the standard PDF fonts cover Latin-1, and ASCII keeps the
# extracted text identical to this source.
SECTIONS: list[tuple[str, list[str | list[str]]]] = [
    (
        "Purpose",
        [
            "This document describes the security model of signal-rag, the Signal bot "
            "that answers questions from a private document collection. Every message "
            "passes through the same LangGraph state machine: sanitize, threat_check, "
            "retrieve, generate and audit, with a fallback node for every path that "
            "cannot produce a normal answer. The controls below are layered, so one "
            "missed check does not expose the system.",
        ],
    ),
    (
        "1. Input sanitisation",
        [
            "The sanitize node runs first, before any other processing of the text:",
            [
                "Unicode NFKC normalisation, so compatibility forms such as full-width "
                "letters and ligatures are folded into their plain equivalents.",
                "Control characters, zero-width characters, bidirectional (bidi) "
                "override characters and Unicode tag characters are stripped. These "
                "are common ways to hide instructions from a human reader.",
                "Runs of whitespace are collapsed.",
                "A message may be at most 2000 characters long. A longer message gets "
                "a clear refusal, and no model is called for it.",
            ],
        ],
    ),
    (
        "2. Threat detection",
        [
            "The threat_check node looks for attacks in two places: in the user's "
            "message, and in every passage returned by retrieval. Checking passages "
            "guards against indirect prompt injection, where a hostile instruction is "
            "planted in a document instead of being typed by the user.",
            "Detected threats include prompt injection, jailbreak attempts, attempts "
            "to extract the system prompt, encoded payloads (base64, hex, rot13), and "
            "shell, SQL and HTML injection strings. Detection is layered: "
            "normalisation, then pattern rules, then a learned detector. Its quality "
            "is measured as recall on labelled attacks and as the false-positive rate "
            "on benign messages that merely look similar. A blocked message is routed "
            "to the fallback node and gets a safe reply.",
        ],
    ),
    (
        "3. Prompt hardening",
        [
            "The system prompt is built on the server side only; no part of it comes "
            "from the user. Retrieved passages and the user's text are clearly "
            "delimited and marked as data, not as instructions. Each deployment puts "
            "its own secret canary string into the system prompt. If the canary ever "
            "shows up in an answer, the model has leaked its instructions.",
        ],
    ),
    (
        "4. Output guard",
        [
            "Before anything is sent, the answer passes an output guard, a small set "
            "of checks written for this project. The answer must not contain:",
            [
                "the canary or any text of the system prompt;",
                "secrets such as API keys or tokens;",
                "URLs other than those of the knowledge base's own documents.",
            ],
            "The answer must also stay within a length cap. An answer that fails any "
            "check is never sent; a safe fallback reply replaces it.",
        ],
    ),
    (
        "5. Guards fail closed",
        [
            "A guard can itself fail, for example because of a bug or a missing "
            "resource. signal-rag then fails closed: the user gets a safe reply saying "
            "the service is temporarily unavailable, and the operators get an alert. "
            "A broken guard never lets an unchecked message or answer through.",
        ],
    ),
    (
        "6. Secrets",
        [
            "Secrets come only from environment variables or Docker secrets files. "
            "They are validated at start-up with clear errors and never logged. The "
            "usage reports of ONNX Runtime, which runs the embedding model, are "
            "switched off, and the bot connects to no host except the ones the "
            "operator configured.",
        ],
    ),
    (
        "7. Safe index loading",
        [
            "signal-rag never unpickles an untrusted file, because a crafted pickle "
            "can run code when it is loaded. The document store next to the FAISS "
            "index is kept as JSON or SQLite instead of a pickle, and every index "
            "file is checked against the sha256 sums in its manifest before use.",
        ],
    ),
    (
        "8. Abuse monitoring",
        [
            "Anomaly rules flag unusually long messages, bursts of traffic, use at "
            "unusual hours, and many users probing the bot with attacks. Each finding "
            "is raised as an audit event and as a metric for the operators.",
        ],
    ),
]


def build_story() -> list:
    """Turn SECTIONS into reportlab flowables."""
    styles = getSampleStyleSheet()
    body = styles["BodyText"]
    # keepWithNext stops a heading from being stranded at the bottom of a page.
    heading_style = ParagraphStyle("SectionHeading", parent=styles["Heading2"], keepWithNext=1)
    story: list = [Paragraph(TITLE, styles["Title"]), Spacer(1, 4 * mm)]
    for heading, blocks in SECTIONS:
        story.append(Paragraph(heading, heading_style))
        for block in blocks:
            if isinstance(block, list):
                items = [ListItem(Paragraph(text, body), leftIndent=12) for text in block]
                story.append(ListFlowable(items, bulletType="bullet", start="-", leftIndent=12))
            else:
                story.append(Paragraph(block, body))
            story.append(Spacer(1, 2 * mm))
    return story


def main(argv: list[str]) -> int:
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    output.parent.mkdir(parents=True, exist_ok=True)
    doc = SimpleDocTemplate(
        str(output),
        pagesize=A4,
        title=TITLE,
        author="signal-rag maintainers",
        subject="Security model of the signal-rag Signal bot",
        creator="scripts/make_sample_pdf.py",
        invariant=1,  # fixed dates and document id: identical bytes on every run
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
    )
    doc.build(build_story())
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
