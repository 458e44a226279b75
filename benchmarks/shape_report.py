"""The targets rows and the Markdown sections of the CSP data shapes."""

from __future__ import annotations

from typing import Any

from benchmarks.common import Target
from benchmarks.storm import SCRAPE_S, TRANSACTION_RECORDS_METRIC

BYTES_PER_EVENT_GOAL = 2048
"""Changelog bytes per input event the state layout must stay under, whatever the account's size."""


STORM_TRANSACTION_GOAL = 20_000
"""Records a storm's largest transaction may hold: a tenth of a 200,000-term storm, a few seconds of the
service's work, well inside the 10 s transaction timeout a transaction must commit within."""


STORM_SECONDS_GOAL = 30.0
"""From readiness to the last TERM_ENDED decision of a storm (200,000 terms at full size): under a quarter
of the service's per-event rate (about 25,000 events/s on 2 cores)."""


GIANT_DECISION_GOAL = 3.0
"""SIGKILL to the next decision, as for the small accounts of the recovery section."""


def shape_targets(shapes: dict[str, Any]) -> list[Target]:
    """The Targets rows of the CSP data shape sections (none for a section not run)."""
    accounts = shapes.get("accounts") or {}
    return _bytes_rows(accounts) + _giant_rows(accounts) + _storm_rows(shapes.get("storm") or {})


def _bytes_rows(accounts: dict[str, Any]) -> list[Target]:
    """Changelog bytes per input event at every account size, or which size was not processed."""
    rows: list[Target] = []
    rows_in = accounts.get("sizes") or []
    measured = [r for r in rows_in if "bytes_per_event" in r]
    failed = [r for r in rows_in if "error" in r]
    if measured or failed:
        per = [
            (r["subscriptions"], r["bytes_per_event"], r["changelog_records"] / max(r["events"], 1)) for r in measured
        ]
        met = not failed and all(b <= BYTES_PER_EVENT_GOAL for _n, b, _r in per)
        notes = []
        over = [x for x in per if x[1] > BYTES_PER_EVENT_GOAL]
        if over:
            worst = max(per, key=lambda x: x[1])
            smallest, biggest = per[0], per[-1]
            grows = biggest[1] > 2 * max(smallest[1], 1)
            how = (
                f"bytes per event grow with the account ({smallest[1]:,} B at {smallest[0]:,} subscriptions, "
                f"{biggest[1]:,} B at {biggest[0]:,}): each transaction rewrites state in proportion to the account, "
                "not to what the event changed"
                if grows
                else f"flat, but each event writes {worst[2]:.1f} changelog records of about "
                f"{worst[1] / max(worst[2], 1e-9):,.0f} bytes"
            )
            notes.append(f"{worst[1] / BYTES_PER_EVENT_GOAL:.2f}x short; bound: {how}")
        for r in failed:
            notes.append(f"the {r['size']:,}-subscription account was not processed: {r['error']}")
        shown = [f"{n:,}: {b:,} B" for n, b, _r in per] + [f"{r['size']:,}: not processed" for r in failed]
        rows.append(
            (
                "changelog bytes per input event ≤ 2,048 at every account size (flat)",
                "; ".join(shown),
                met,
                "; ".join(notes),
            )
        )
    return rows


def _giant_rows(accounts: dict[str, Any]) -> list[Target]:
    """The giant account's SIGKILL to its next decision, decided as the engine decides it."""
    rows: list[Target] = []
    giant = accounts.get("giant") or {}
    if accounts:
        name = (
            f"{giant.get('subscriptions', 0):,}-subscription account: SIGKILL → its next decision ≤ 3 s, decided right"
        )
        seconds = giant.get("restart_to_next_decision_s")
        if seconds is None:
            why = giant.get("error") or accounts.get("error") or "not measured"
            rows.append((name, "n/a", False, f"not measured: {why}"))
        else:
            right = bool(giant.get("decided_right"))
            met = right and seconds <= GIANT_DECISION_GOAL
            note = ""
            if not right:
                note = f"decided {giant.get('next_decision')}, the engine says {giant.get('expected_decision')}"
            elif not met:
                phases = {k: v for k, v in (giant.get("breakdown") or {}).items() if v is not None}
                longest = sorted(phases.items(), key=lambda kv: -kv[1])[:2]
                where = ", ".join(f"{k} {v:g} s" for k, v in longest) if longest else "see the section"
                note = (
                    f"{seconds / GIANT_DECISION_GOAL:.2f}x short; bound: the restart's longest phases: {where} "
                    f"(the restore read {giant.get('restore_records')} records in {giant.get('restore_s')} s)"
                )
            rows.append((name, f"{seconds} s, {'right' if right else 'wrong'}", met, note))
    return rows


def _storm_rows(storm: dict[str, Any]) -> list[Target]:
    """The month-end storm: every term end decided once, how soon, and its largest transaction."""
    rows: list[Target] = []
    if storm:
        terms = storm["terms"]
        count = storm.get("term_ended", 0)
        twice = storm.get("term_ended_records", 0) - count
        met = count == terms and twice == 0
        note = ""
        if not met:
            note = f"{terms - count:,} missing" + (f", {twice:,} decided twice" if twice else "")
            if storm.get("timed_out"):
                note += f" when the wait ended; {_v(storm.get('aborts'), '{:,.0f}')} aborted transactions"
            if storm.get("error"):
                note += f"; {storm['error']}"
        rows.append((f"month-end storm: {terms:,} term ends, each decided TERM_ENDED once", f"{count:,}", met, note))
        goal_s = STORM_SECONDS_GOAL
        last = storm.get("ready_to_last_s")
        note = ""
        met_s = False if storm.get("timed_out") else (None if last is None else last <= goal_s)
        if storm.get("timed_out"):
            note = "not every term end was decided (see the row above)"
        elif met_s is False and last:
            note = (
                f"{last / goal_s:.2f}x short; bound: the firing's transactions ({storm.get('transactions')}, the "
                f"largest {storm.get('largest_transaction_records')} records): the engine's work per term end, then "
                "the produce and commit of each"
            )
        rows.append(
            (
                f"month-end storm: readiness → last TERM_ENDED visible ≤ {goal_s:g} s",
                "n/a" if last is None else f"{last} s",
                met_s,
                note,
            )
        )
        largest = storm.get("largest_transaction_records")
        upper = storm.get("largest_transaction_upper_bound")
        if upper is not None and (largest is None or upper > largest):
            largest = upper  # only a sum of several is known to be at least this large: take it as the bound
        met_t = None if largest is None else largest <= STORM_TRANSACTION_GOAL
        note = ""
        if met_t is False and largest:
            note = (
                f"{largest / STORM_TRANSACTION_GOAL:.2f}x short; bound: every due deadline fires in one batch, so "
                "one transaction carries every term end's decision, status and state (no timer slice)"
            )
        rows.append(
            (
                f"month-end storm: largest transaction ≤ {STORM_TRANSACTION_GOAL:,} records",
                "n/a" if largest is None else f"{largest:,} records",
                met_t,
                note,
            )
        )
    return rows


def _v(x: Any, fmt: str = "{:,}") -> str:
    return "n/a" if x is None else fmt.format(x)


def render_sections(shapes: dict[str, Any]) -> list[str]:
    """The Markdown sections of the CSP data shapes (none for a section not run)."""
    lines: list[str] = []
    if shapes.get("error"):
        lines += ["", "## CSP data shapes", "", f"Not measured: {shapes['error']}."]
    accounts = shapes.get("accounts") or {}
    return lines + _bytes_section(accounts) + _giant_section(accounts) + _storm_section(shapes.get("storm") or {})


def _bytes_section(accounts: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    sizes = accounts.get("sizes") or []
    if sizes:
        lines += [
            "",
            "## Changelog bytes per input event",
            "",
            "Accounts of the realistic shape (an enterprise buying profile) built through the exactly-once "
            "service, then further events on each, sent one at a time so that each is a transaction of its own: "
            "in turn a new license purchase, a renewal and a cancellation of an open subscription. Bytes are the "
            "keys and values of the changelog records appended meanwhile, read with a read_committed consumer "
            "from the offsets before the first event to the end; divided by the events sent.",
            "",
            "| account subscriptions | events sent | changelog records | changelog bytes | bytes / event | seconds |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in sizes:
            if "bytes_per_event" in r:
                lines.append(
                    f"| {r['subscriptions']:,} | {r['events']:,} | {r['changelog_records']:,} | "
                    f"{r['changelog_bytes']:,} | {r['bytes_per_event']:,} | {r['seconds']} |"
                )
            elif "error" in r:
                lines.append(f"| {r['size']:,} | n/a | n/a | n/a | n/a | n/a |")
        lines += ["", f"Not processed: {accounts['error']}."] if accounts.get("error") else []
    return lines


def _giant_section(accounts: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    giant = accounts.get("giant") or {}
    if accounts and giant.get("process_s") is None:
        lines += [
            "",
            f"## One account of {giant.get('subscriptions', 0):,} subscriptions",
            "",
            f"Not measured: {giant.get('error') or accounts.get('error') or 'the account was not built'}.",
        ]
    elif giant.get("process_s") is not None:
        lines += [
            "",
            f"## One account of {giant['subscriptions']:,} subscriptions",
            "",
            f"Its {giant['events']:,} events published at once to the running exactly-once service (the same as "
            "the section above) and timed to its group's committed offsets covering them; then the service is "
            "SIGKILLed and started again at once (static membership), and a cancellation of one of the account's "
            "subscriptions is sent: the time to its decision (read_committed), and that decision against the pure "
            "engine's for the same history. The restore reads every account the service held (those above too).",
            "",
            "| measure | value |",
            "|---|---:|",
            f"| published → account processed (s) | {giant['process_s']} |",
            f"| changelog records restored | {_v(giant.get('restore_records'))} |",
            f"| restore seconds | {_v(giant.get('restore_s'))} |",
            f"| restart → next decision for the account (s) | {_v(giant.get('restart_to_next_decision_s'))} |",
            f"| next decision | {' / '.join(giant.get('next_decision') or ['n/a'])} |",
            f"| decided as the engine decides it | {'yes' if giant.get('decided_right') else 'no'} |",
            *(f"| restart phase: {k} (s) | {_v(v)} |" for k, v in (giant.get("breakdown") or {}).items()),
        ]
        lines += ["", f"After the restart: {giant['error']}."] if giant.get("error") else []
    return lines


def _storm_section(storm: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    if storm:
        metric = storm.get("largest_transaction_metric")
        lines += [
            "",
            "## Month-end storm",
            "",
            f"{storm['terms']:,} license terms over {storm['accounts']:,} accounts, all ending at "
            f"{storm['deadline']}, in state last evaluated one second before that instant: built offline with the "
            f"store ({storm['state_records_written']:,} changelog records in {storm['state_build_s']} s), written "
            "to the service's changelog before it starts, with no input at all. The service restores them and "
            "every deadline is due at once. The largest transaction is the service's own "
            "`multichannel_transaction_records_max`; without it, transactions and their records are read from the "
            f"service's counters (committed transactions, records written to every topic) every {SCRAPE_S:g} s: an "
            "interval with one commit gives that transaction's size exactly; one with several only their sum. "
            "Beside it, "
            "the largest run of records between two transaction markers on one partition of the decision, status "
            "or changelog topic (a read_uncommitted reader sees a marker as a gap in the offsets)."
            + (
                ""
                if metric is not None
                else f" The service has no `{TRANSACTION_RECORDS_METRIC}` histogram yet; when it has, its largest "
                "bucket is shown beside."
            ),
            "",
            "| measure | value |",
            "|---|---:|",
            f"| changelog records restored | {_v(storm.get('restore_records'))} |",
            f"| restore seconds | {_v(storm.get('restore_s'))} |",
            f"| service start → readiness (s) | {_v(storm.get('start_to_ready_s'))} |",
            f"| readiness → first TERM_ENDED visible (s) | {_v(storm.get('ready_to_first_s'))} |",
            f"| readiness → last TERM_ENDED visible (s) | {_v(storm.get('ready_to_last_s'))} |",
            f"| TERM_ENDED decisions (distinct subscriptions / records) | {storm.get('term_ended', 0):,} / "
            f"{storm.get('term_ended_records', 0):,} |",
            f"| transactions committed while it fired | {_v(storm.get('transactions'))} |",
            f"| records written meanwhile (every topic) | {_v(storm.get('records_written'))} |",
            f"| largest transaction (records) | {_v(storm.get('largest_transaction_records'))} |",
            *(
                [f"| several commits between two reads: their records, at most | {upper:,} |"]
                if (upper := storm.get("largest_transaction_upper_bound"))
                else []
            ),
            f"| largest run between markers on one partition (records) | {_v(storm.get('largest_partition_run'))} |",
            *([f"| largest transaction, `{TRANSACTION_RECORDS_METRIC}` bucket | ≤ {metric:,.0f} |"] if metric else []),
            f"| aborted transactions | {_v(storm.get('aborts'), '{:,.0f}')} |",
        ]
    return lines
