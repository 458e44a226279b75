"""The preview's report on the terminal: the from → to table, the partners with the most changes, the next
actions that appear or disappear, and a word on anything that would make a restart commit more."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from multichannel.preview import PreviewSummary


def render(console: Console, summary: PreviewSummary, *, top: int, output: Path | None) -> None:
    """Print the figures of `summary` (`top` partners and subscriptions by name)."""
    s = summary
    console.print(
        f"[bold]What changes under rule book {s.after}[/bold] (from {s.before}) at "
        f"{s.clock.isoformat().replace('+00:00', 'Z')}: {s.changed:,} of {s.subscriptions:,} subscriptions "
        f"in {s.accounts_changed:,} of {s.accounts:,} accounts"
    )
    transitions = Table(title="from → to")
    transitions.add_column("from (decision / reason)", overflow="fold")
    transitions.add_column("to (decision / reason)", overflow="fold")
    transitions.add_column("subscriptions", justify="right")
    for before, after, n in s.rows():
        transitions.add_row(before.replace("/", " / "), after.replace("/", " / "), f"{n:,}")
    console.print(transitions)
    partners = Table("partner", "changed subscriptions", title=f"partners with the most changes (top {top})")
    partners.columns[1].justify = "right"
    for partner, n in s.top_partners(top):
        partners.add_row(partner, f"{n:,}")
    console.print(partners)
    actions = Table("next action", "appears on", "disappears from", title="next actions")
    for action in sorted(set(s.actions_gained) | set(s.actions_lost)):
        actions.add_row(action, f"{s.actions_gained[action]:,}", f"{s.actions_lost[action]:,}")
    console.print(actions)
    if s.samples:
        moved = Table(
            "partner",
            "customer",
            "subscription",
            "appears",
            "disappears",
            title=f"subscriptions whose next actions appear or disappear ({s.actions_moved:,}; first {top})",
        )
        for change in s.samples[:top]:
            moved.add_row(
                change.partner_id,
                change.customer_id,
                change.subscription_id,
                " ".join(change.actions_gained),
                " ".join(change.actions_lost),
            )
        console.print(moved)
    if s.statuses:
        statuses = Table("status before", "status after", "accounts", title="customer status")
        for (before, after), n in sorted(s.statuses.items()):
            statuses.add_row(before, after, f"{n:,}")
        console.print(statuses)
    _notes(console, s, output)


def _notes(console: Console, s: PreviewSummary, output: Path | None) -> None:
    """What a restart with the other book would do beyond this list, and where the list went."""
    version = s.before.split(" ", 1)[-1]
    other = {v or "no version": n for v, n in s.saved_by.items() if v != version}
    if other:
        saved = ", ".join(f"{n:,} by {v}" for v, n in sorted(other.items()))
        console.print(f"[yellow]note: accounts saved by another rule book than {s.before}: {saved}[/yellow]")
    if s.stale:
        console.print(
            f"[yellow]note: {s.stale:,} subscriptions' stored decisions are not what {s.before} says at this clock "
            "(timers due and not fired yet, or another book saved them): a restart emits those as well[/yellow]"
        )
    if output is not None:
        console.print(f"wrote {s.changed:,} changed subscriptions to {output}")
