"""The "What changes under rule book X" page: a preview written by `multichannel rules preview --output
FILE.jsonl`, read back (MULTICHANNEL_DASHBOARD_PREVIEW_FILE) and shown with the command's own figures.

The file is the operable seam: the command reads the deployment's committed state (and can run where the
brokers are), the dashboard only reads what it wrote. It is read again when it changes (its modification
time or size), so a new preview shows up on the next page load. The figures are the ones the command prints,
added up by the same code (`multichannel.preview.PreviewSummary`) from the same rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

from dashboard.rules import ACTION_LABEL, DECISION_LABEL
from multichannel.preview import Change, PreviewSummary, change_from_record

PAGE_SIZE: Final = 50


@dataclass(frozen=True)
class Preview:
    """One preview file's content: its figures and every changed subscription, in the file's order."""

    summary: PreviewSummary
    changes: list[Change]
    stamp: tuple[float, int]
    """(modification time, size) of the file read."""


@dataclass
class PreviewFile:
    """The preview file the page shows; `load` reads it when it has changed since the last read."""

    path: Path | None
    _cached: Preview | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def load(self) -> Preview | str:
        """The preview, or why there is none to show (a sentence for the page)."""
        if self.path is None:
            return (
                "No preview file is set: write one with `multichannel rules preview --to current --output "
                "preview.jsonl` and point MULTICHANNEL_DASHBOARD_PREVIEW_FILE at it."
            )
        try:
            st = self.path.stat()
        except OSError:
            return f"No preview at {self.path} yet: `multichannel rules preview --to current --output {self.path}`."
        stamp = (st.st_mtime, st.st_size)
        with self._lock:
            if self._cached is None or self._cached.stamp != stamp:
                read = read_preview(self.path, stamp)
                if isinstance(read, str):
                    return read
                self._cached = read
            return self._cached


def read_preview(path: Path, stamp: tuple[float, int]) -> Preview | str:
    """A JSON-lines preview file (change rows, then its summary line), or what is wrong with it."""
    changes: list[Change] = []
    figures: dict[str, Any] | None = None
    try:
        with path.open("rb") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                row = orjson.loads(line)
                kind = row.get("record_type") if isinstance(row, dict) else None
                if kind == "preview_change":
                    changes.append(change_from_record(row))
                elif kind == "preview_summary":
                    figures = row
                else:
                    return f"{path}: line {n} is not a preview's row (was it written with --format jsonl?)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{path} cannot be read as a preview: {exc}"
    if figures is None:
        return f"{path} has no summary line: the preview that writes it did not finish"
    summary = PreviewSummary.from_figures(figures)
    for change in changes:
        summary.add_change(change)
    if summary.changed != figures["changed"]:
        return f"{path} holds {summary.changed:,} changes where its summary says {figures['changed']:,}"
    return Preview(summary, changes, stamp)


def _side(decision: str, reason: str) -> dict[str, str]:
    return {"decision": decision, "label": DECISION_LABEL.get(decision, decision), "reason": reason}


def _actions(codes: tuple[Any, ...]) -> list[dict[str, str]]:
    return [{"code": a._value_, "label": ACTION_LABEL.get(a._value_, a._value_)} for a in codes]


def _row(change: Change) -> dict[str, Any]:
    before, after = change.before, change.after
    return {
        "partner_id": change.partner_id,
        "customer_id": change.customer_id,
        "subscription_id": change.subscription_id,
        "from": {**_side(before[0]._value_, before[1]._value_), "rule": before[2]._value_},
        "to": {**_side(after[0]._value_, after[1]._value_), "rule": after[2]._value_},
        "actions_gained": _actions(change.actions_gained),
        "actions_lost": _actions(change.actions_lost),
    }


def preview_page(
    source: PreviewFile, *, partner: str | None = None, moved: bool = False, page: int = 1, top: int = 10
) -> dict[str, Any]:
    """What the page and `/api/preview` show: the figures, and one page of the changed subscriptions (of one
    partner, and only those whose next actions appear or disappear, when asked)."""
    loaded = source.load()
    if isinstance(loaded, str):
        return {"available": False, "message": loaded}
    s = loaded.summary
    rows = [
        c
        for c in loaded.changes
        if (partner is None or c.partner_id == partner) and (not moved or c.actions_gained or c.actions_lost)
    ]
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(1, page), pages)
    figures = s.figures()
    return {
        "available": True,
        "file": str(source.path),
        "from": s.before,
        "to": s.after,
        "to_name": s.after.split(" ", 1)[0],
        "as_of": figures["as_of"].isoformat().replace("+00:00", "Z"),
        **{k: figures[k] for k in ("accounts", "subscriptions", "changed", "accounts_changed", "stale")},
        "saved_by": figures["saved_by"],
        "transitions": [
            {"from": _side(*b.split("/", 1)), "to": _side(*a.split("/", 1)), "count": n} for b, a, n in s.rows()
        ],
        "partners": [{"partner_id": p, "count": n} for p, n in s.top_partners(top)],
        "actions": [
            {
                "code": a,
                "label": ACTION_LABEL.get(a, a),
                "gained": s.actions_gained[a],
                "lost": s.actions_lost[a],
            }
            for a in sorted(set(s.actions_gained) | set(s.actions_lost))
        ],
        "actions_moved": s.actions_moved,
        "statuses": [{"from": b, "to": a, "count": n} for (b, a), n in sorted(s.statuses.items())],
        "filter": {"partner": partner, "moved": moved},
        "matching": len(rows),
        "page": page,
        "pages": pages,
        "rows": [_row(c) for c in rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]],
    }
