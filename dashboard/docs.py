"""`/docs/rules.md`: the rule book's page that rule ids link to.

When `docs/rules.md` exists it is rendered as HTML (markdown-it-py, the renderer rich already brings;
the file is the repository's own text, not data from Kafka), each heading with the anchor a Markdown
renderer gives it, which is what `rules.rule_link` points at; its sections also feed `/api/rules`.
Until then the dashboard's own short text of each rule stands in for it.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

from markdown_it import MarkdownIt

from dashboard.rules import RULE_TEXT, RULE_TITLE, RULES_DOC, rule_anchor, slug


def rules_page() -> list[dict[str, Any]]:
    """Sections `{level, title, anchor, paragraphs}`: of docs/rules.md, or one per rule."""
    try:
        text = RULES_DOC.read_text(encoding="utf-8")
    except OSError:
        return [
            {"level": 2, "title": f"{rule} {RULE_TITLE[rule]}", "anchor": rule_anchor(rule), "paragraphs": [body]}
            for rule, body in RULE_TEXT.items()
        ]
    sections: list[dict[str, Any]] = [{"level": 1, "title": "", "anchor": "", "paragraphs": []}]
    paragraph: list[str] = []

    def close_paragraph() -> None:
        if paragraph:
            sections[-1]["paragraphs"].append("\n".join(paragraph))
            paragraph.clear()

    for line in text.splitlines():
        heading = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if heading:
            close_paragraph()
            title = heading.group(2)
            sections.append({"level": len(heading.group(1)), "title": title, "anchor": slug(title), "paragraphs": []})
        elif re.fullmatch(r'\s*<a id="[\w-]+"></a>\s*', line):
            continue  # a fixed anchor for links from outside; the section's heading carries its own
        elif line.strip():
            paragraph.append(line)
        else:
            close_paragraph()
    close_paragraph()
    return [s for s in sections if s["title"] or s["paragraphs"]]


def rules_html() -> str | None:
    """docs/rules.md as HTML with anchored headings (tables and its own `<a id>` anchors kept), or None
    while the file does not exist."""
    try:
        text = RULES_DOC.read_text(encoding="utf-8")
    except OSError:
        return None
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    tokens = md.parse(text)
    for opening, inline in pairwise(tokens):
        if opening.type == "heading_open":
            opening.attrSet("id", slug(inline.content))
    html: str = md.renderer.render(tokens, md.options, {})
    return html
