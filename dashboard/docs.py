"""`/docs/rules.md`: the rule book's page that rule ids link to.

When `docs/rules.md` exists it is shown as it is written, heading by heading (each heading gets the
anchor a Markdown renderer gives it, which is what `rules.rule_link` points at); until then the
dashboard's own short text of each rule stands in for it.
"""

from __future__ import annotations

import re
from typing import Any

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
