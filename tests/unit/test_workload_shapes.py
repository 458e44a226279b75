"""The generator's workload shapes: `uniform` unchanged, `realistic` (heavy-tailed accounts, month-boundary
terms, late partner changes), the month-end storm, and `multichannel generate --shape/--giant`."""

from __future__ import annotations

import hashlib
import io
import random
import statistics
from collections import Counter, defaultdict
from datetime import UTC, date, datetime

import orjson
import pytest
from typer.testing import CliRunner

from cli.main import app
from consumers.classify_runner import classify_stream
from multichannel.errors import InvalidEvent, SchemaMismatch
from multichannel.parse import parse_event
from producers.generator import BadRecord, EventDict, WorkloadGenerator, WorkloadSpec, storm_events

Item = EventDict | BadRecord
FAR_FUTURE = datetime(2031, 1, 1, tzinfo=UTC)  # past every term end of the streams below: every timer fires


def _digest(spec: WorkloadSpec) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for item in WorkloadGenerator(spec).events():
        if isinstance(item, BadRecord):
            h.update(orjson.dumps({"bad": item.reason, "key": item.key, "event": item.event}))
        else:
            h.update(orjson.dumps(item))
        h.update(b"\n")
        n += 1
    return n, h.hexdigest()


def _line(item: Item) -> bytes:
    """The JSON line `multichannel generate` writes for an item."""
    if isinstance(item, BadRecord):
        return item.event.encode() if isinstance(item.event, str) else orjson.dumps(item.event)
    return orjson.dumps(item)


def _events(items: list[Item]) -> list[EventDict]:
    return [item for item in items if not isinstance(item, BadRecord)]


def _subscriptions_per_account(events: list[EventDict]) -> Counter[tuple[str, str]]:
    subs = {
        (e["partner_id"], e["customer_id"], e["subscription_id"])
        for e in events
        if e["event_type"] == "subscription_purchased"
    }
    return Counter((pid, cid) for pid, cid, _sid in subs)


def _partner_arrivals(events: list[EventDict]) -> dict[str, list[tuple[str, str]]]:
    """Per partner, its program changes as (occurred_at, event_id) in arrival order (a duplicate counts where
    its event first arrived)."""
    seen: set[str] = set()
    arrivals: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for e in events:
        if e["event_type"] == "partner_program_changed" and e["event_id"] not in seen:
            seen.add(e["event_id"])
            arrivals[e["partner_id"]].append((e["occurred_at"], e["event_id"]))
    return arrivals


def _final_decisions(lines: list[bytes]) -> dict[tuple[str, str, str], tuple[object, ...]]:
    """Each subscription's last decision after classifying `lines` with the clock moved past every term end."""
    out = io.BytesIO()
    classify_stream(lines, out, as_of=FAR_FUTURE)
    final: dict[tuple[str, str, str], tuple[object, ...]] = {}
    for raw in out.getvalue().splitlines():
        r = orjson.loads(raw)
        if r["record_type"] == "subscription_decision":
            final[(r["partner_id"], r["customer_id"], r["subscription_id"])] = (
                r["decision"],
                r["reason"],
                r["rule"],
                tuple(r["next_actions"]),
                r["blocked_until"],
                tuple(r["relationship_via_partner_ids"]),
            )
    return final


@pytest.fixture(scope="module")
def realistic() -> list[Item]:
    """The default realistic spec's whole stream (about 41,000 records)."""
    return list(WorkloadGenerator(WorkloadSpec(shape="realistic")).events())


SMALL = WorkloadSpec(
    shape="realistic", seed=5, partners=30, customers=300, partner_change_rate=0.3, max_subscriptions=300
)


# ---------------------------------------------------------------------------------------------- uniform


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            WorkloadSpec(seed=7, max_events=5000),
            (5000, "a2fb49db8a7b8993b2ac72b5c31e8c58d54cd6a332a9db1fbb50aacd8b5d7fc8"),
        ),
        (WorkloadSpec(), (9047, "e52bb90db63df29c8f3bb8d62274296dd9892c50cc5d42f6a7186133a549ef27")),
        (
            WorkloadSpec(
                seed=3,
                partners=50,
                customers=300,
                bad_rate=0.05,
                duplicate_rate=0.03,
                subscription_counts=(5, 10),
            ),
            (4294, "6c6df8dea65261d33cf93e68b2c4d7468d45081fdf8c54bee19f7f94b0bcdfe9"),
        ),
    ],
)
def test_uniform_stream_is_the_one_before_shapes(spec: WorkloadSpec, expected: tuple[int, str]) -> None:
    """The uniform shape yields, record for record, the stream the generator yielded before shapes existed."""
    assert _digest(spec) == expected


def test_uniform_giant_account_adds_one_account_of_that_size() -> None:
    """`giant_accounts` on the uniform shape adds one account per size, with exactly that many subscriptions."""
    events = _events(list(WorkloadGenerator(WorkloadSpec(seed=2, customers=50, giant_accounts=(700,))).events()))
    sizes = _subscriptions_per_account(events)
    assert [n for (_p, c), n in sizes.items() if c == "C0000050"] == [700]
    assert max(n for (_p, c), n in sizes.items() if c != "C0000050") <= 4


def test_spec_rejects_an_unknown_shape_and_impossible_sizes() -> None:
    """A spec with an unknown shape, a giant account of no subscription or a late rate above 1 is refused."""
    with pytest.raises(ValueError, match="shape"):
        WorkloadSpec(shape="zigzag")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="giant"):
        WorkloadSpec(giant_accounts=(0,))
    with pytest.raises(ValueError, match="late_partner_rate"):
        WorkloadSpec(late_partner_rate=1.5)


# -------------------------------------------------------------------------------------------- realistic


def test_realistic_account_sizes_are_heavy_tailed(realistic: list[Item]) -> None:
    """The default realistic stream holds an account of 10,000+ subscriptions while the median account holds
    one or two and nine in ten at most ten."""
    sizes = sorted(_subscriptions_per_account(_events(realistic)).values())
    assert sizes[-1] >= 10_000
    assert statistics.median(sizes) <= 2
    assert sum(n <= 10 for n in sizes) >= 0.85 * len(sizes)
    assert sum(n >= 100 for n in sizes) >= 10  # a real tail, not one planted account among small ones


def test_realistic_sizes_follow_the_cap_and_the_guarantee_rule() -> None:
    """Drawn sizes never exceed `max_subscriptions`; below 1,000 accounts no account is raised to 10,000,
    and from 1,000 accounts on (cap >= 10,000) one account holds at least 10,000."""
    capped = WorkloadGenerator(WorkloadSpec(shape="realistic", customers=3000, max_subscriptions=500)).account_sizes()
    assert max(n for _p, _c, n in capped) == 500
    few = WorkloadGenerator(WorkloadSpec(shape="realistic", customers=200)).account_sizes()
    assert len(few) < 1000
    assert max(n for _p, _c, n in few) < 10_000
    for seed in range(3):
        many = WorkloadGenerator(WorkloadSpec(shape="realistic", seed=seed, customers=900)).account_sizes()
        assert len(many) >= 1000
        assert max(n for _p, _c, n in many) >= 10_000


def test_realistic_account_sizes_match_the_stream() -> None:
    """`account_sizes()` names exactly the accounts and subscription counts that `events()` purchases."""
    spec = WorkloadSpec(shape="realistic", seed=9, customers=150, giant_accounts=(2_500,), duplicate_rate=0.0)
    expected = {(p, c): n for p, c, n in WorkloadGenerator(spec).account_sizes()}
    assert dict(_subscriptions_per_account(_events(list(WorkloadGenerator(spec).events())))) == expected
    assert expected[next(k for k in expected if k[1] == "C0000150")] == 2_500


def test_realistic_terms_run_from_a_first_to_a_first(realistic: list[Item]) -> None:
    """Every license term starts on the 1st of a month and ends 1, 12 or 36 months later on the 1st (a
    renewal adds one more term), so that many terms end at the same midnight."""
    terms: Counter[int] = Counter()
    ends: Counter[str] = Counter()
    for e in _events(realistic):
        if e["event_type"] == "subscription_purchased" and e["billing_model"] == "license":
            start, end = date.fromisoformat(e["term_start"]), date.fromisoformat(e["term_end"])
            assert start.day == 1
            assert end.day == 1
            terms[(end.year - start.year) * 12 + end.month - start.month] += 1
            ends[e["term_end"]] += 1
        elif e["event_type"] == "subscription_renewed":
            assert date.fromisoformat(e["term_end"]).day == 1
    assert set(terms) == {1, 12, 36}
    assert ends.most_common(1)[0][1] >= 1000  # a thousand terms or more end at one midnight


def test_realistic_partner_changes_arrive_late() -> None:
    """Some partners' last-arriving program change is older than one that arrived before it, and the late
    changes are about `late_partner_rate` of all changes; with rate 0 arrival order is event order."""
    spec = WorkloadSpec(shape="realistic", seed=11, partners=100, customers=200, partner_change_rate=0.3)
    gen = WorkloadGenerator(spec)
    arrivals = _partner_arrivals(_events(list(gen.events())))
    last_is_older = [pid for pid, changes in arrivals.items() if changes[-1] < max(changes)]
    assert len(last_is_older) >= 3
    changes = sum(len(own) - 1 for own in arrivals.values())  # the first is each partner's initial program
    assert 0.15 * changes <= len(set(gen.late_partner_event_ids)) <= 0.45 * changes
    in_order = WorkloadSpec(**{**spec.__dict__, "late_partner_rate": 0.0})
    arrivals = _partner_arrivals(_events(list(WorkloadGenerator(in_order).events())))
    assert sum(len(own) - 1 for own in arrivals.values()) == changes
    assert all(own == sorted(own) for own in arrivals.values())


def test_realistic_late_change_is_guaranteed_when_possible() -> None:
    """With one changing partner and a tiny late rate, that partner's last-arriving change is still an older one."""
    spec = WorkloadSpec(shape="realistic", seed=1, partners=10, customers=20, partner_change_rate=0.1)
    gen = WorkloadGenerator(WorkloadSpec(**{**spec.__dict__, "late_partner_rate": 0.001}))
    arrivals = _partner_arrivals(_events(list(gen.events())))
    assert len(gen.late_partner_event_ids) == 1
    late = next(own for own in arrivals.values() if own[-1][1] == gen.late_partner_event_ids[0])
    assert len(late) >= 3  # the initial program and at least two changes
    assert late[-1] < max(late)


def test_realistic_stream_is_deterministic_for_a_seed() -> None:
    """The same realistic spec gives the same records in the same order; another seed gives another stream."""
    first = [_line(i) for i in WorkloadGenerator(SMALL).events()]
    assert first == [_line(i) for i in WorkloadGenerator(SMALL).events()]
    assert first != [_line(i) for i in WorkloadGenerator(WorkloadSpec(**{**SMALL.__dict__, "seed": 6})).events()]


def test_realistic_lines_parse_and_only_bad_records_dead_letter(realistic: list[Item]) -> None:
    """Every realistic line passes the parse `classify` applies to a JSON line (orjson, then `parse_event`),
    and exactly the bad records fail, each with its intended reason (KEY_MISMATCH excepted: offline there is
    no key to contradict)."""
    intended: dict[int, str] = {}
    failed: dict[int, str] = {}
    for number, item in enumerate(realistic, start=1):
        if isinstance(item, BadRecord) and item.reason != "KEY_MISMATCH":
            intended[number] = item.reason
        try:
            try:
                obj = orjson.loads(_line(item))
            except orjson.JSONDecodeError:
                raise SchemaMismatch("not JSON") from None
            parse_event(obj)
        except InvalidEvent as exc:
            failed[number] = exc.reason
    assert len(intended) >= 200
    assert failed == intended


def test_classify_dead_letters_only_the_bad_records() -> None:
    """The offline `classify` over a small realistic stream dead-letters exactly its bad records (not the
    KEY_MISMATCH ones, valid offline), by line number and reason."""
    items = list(WorkloadGenerator(WorkloadSpec(**{**SMALL.__dict__, "bad_rate": 0.05})).events())
    intended = {
        n: i.reason for n, i in enumerate(items, start=1) if isinstance(i, BadRecord) and i.reason != "KEY_MISMATCH"
    }
    out = io.BytesIO()
    classify_stream([_line(i) for i in items], out)
    dead = {r["line"]: r["reason"] for r in map(orjson.loads, out.getvalue().splitlines()) if "line" in r}
    assert len(intended) >= 50
    assert dead == intended


def test_classify_final_decisions_do_not_depend_on_partner_arrival_order() -> None:
    """Classifying a small realistic stream decides every purchased subscription, and its final decisions
    are the same with the partner changes' arrival put in event order or shuffled among themselves."""
    items = list(WorkloadGenerator(SMALL).events())
    lines = [_line(i) for i in items]
    partner_events = {
        n: i
        for n, i in enumerate(items)
        if not isinstance(i, BadRecord) and i["event_type"] == "partner_program_changed"
    }
    slots = list(partner_events)
    final = _final_decisions(lines)
    purchased = _subscriptions_per_account(_events(items))
    assert len(final) == sum(purchased.values())
    assert {(p, c) for p, c, _s in final} == set(purchased)
    by_time = sorted(slots, key=lambda n: (partner_events[n]["occurred_at"], partner_events[n]["event_id"]))
    shuffled = list(slots)
    random.Random(3).shuffle(shuffled)
    for order in (by_time, shuffled):
        rearranged = list(lines)
        for slot, source in zip(slots, order, strict=True):
            rearranged[slot] = lines[source]
        assert rearranged != lines
        assert _final_decisions(rearranged) == final


# ------------------------------------------------------------------------------------------------ storm


def test_storm_events_end_every_term_at_one_midnight() -> None:
    """`storm_events` yields n valid license purchases over the accounts, all ending on `end`; classified after
    their partners' programs they are all blocked until `end`, and all decided again at that midnight."""
    end = date(2026, 7, 1)
    storm = list(storm_events(3_000, 700, end, seed=4, partners=40, with_programs=True))
    programs, purchases = storm[:40], storm[40:]
    assert {e["event_type"] for e in programs} == {"partner_program_changed"}
    assert len(purchases) == 3_000
    assert {e["term_end"] for e in purchases} == {"2026-07-01"}
    assert {(e["partner_id"], e["customer_id"]) for e in purchases} == {
        (f"P{a % 40:05d}", f"C{a:07d}") for a in range(700)
    }
    assert [e["occurred_at"] for e in purchases] == sorted(e["occurred_at"] for e in purchases)
    assert all(e["occurred_at"] < "2026-07-01" for e in purchases)
    for e in storm:
        parse_event(e)
    assert storm == list(storm_events(3_000, 700, end, seed=4, partners=40, with_programs=True))
    assert list(storm_events(3_000, 700, end, seed=4, partners=40)) == purchases
    out = io.BytesIO()
    classify_stream([orjson.dumps(e) for e in storm], out, as_of=datetime(2026, 7, 1, tzinfo=UTC))
    decisions = [
        r for r in map(orjson.loads, out.getvalue().splitlines()) if r["record_type"] == "subscription_decision"
    ]
    before = [r for r in decisions if r["decided_at"] < "2026-07-01"]
    at_end = [r for r in decisions if r["decided_at"] == "2026-07-01T00:00:00Z"]
    assert len(before) == len(at_end) == 3_000
    assert {r["decision"] for r in before} == {"BLOCKED_UNTIL_TERM_END"}
    assert {r["blocked_until"] for r in before} == {"2026-07-01"}
    assert {(r["decision"], r["reason"]) for r in at_end} == {("CSP_SWITCH_PERMITTED", "TERM_ENDED")}


# -------------------------------------------------------------------------------------------------- CLI


def test_generate_realistic_with_a_giant_account() -> None:
    """`multichannel generate --shape realistic --giant 12000` writes an account with exactly 12,000 subscriptions."""
    result = CliRunner().invoke(
        app,
        ["generate", "--shape", "realistic", "--giant", "12000", "--customers", "60", "--partners", "20"],
    )
    assert result.exit_code == 0, result.output
    events = [orjson.loads(line) for line in result.stdout_bytes.splitlines() if line.startswith(b'{"event_type"')]
    sizes = _subscriptions_per_account([e for e in events if e.get("event_id")])
    assert [n for n in sizes.values() if n == 12_000] == [12_000]
    assert sorted(sizes.values())[-2] < 12_000


def test_generate_refuses_an_unknown_shape() -> None:
    """`multichannel generate --shape` accepts only uniform and realistic (usage error, exit 2)."""
    result = CliRunner().invoke(app, ["generate", "--shape", "zigzag"])
    assert result.exit_code == 2
