"""The generator's contract-1.1 mix (`WorkloadSpec.nce_fraction`, `expert_msp_fraction`, `ea_azure_fraction`,
`gdap_expiry`, `MIXES`, `multichannel generate --mix`): off by default, drawn apart from the stream, and rich
enough that the `current` rule book's rules and timers all occur."""

from __future__ import annotations

import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from cli.main import app
from consumers.classify_runner import classify_stream
from multichannel.engine import Classifier
from multichannel.parse import parse_event, parse_timestamp
from multichannel.rulebooks import CURRENT, SEED, RuleBook
from producers.generator import GDAP_DAYS, MIXES, BadRecord, EventDict, WorkloadGenerator, WorkloadSpec

FAR_FUTURE = datetime(2032, 1, 1, tzinfo=UTC)  # past every term end, window end and GDAP expiry below
CONTRACT_11_FIELDS = ("commerce", "cancellation_allowed_until", "azure_expert_msp", "expires_at")
UNIFORM = WorkloadSpec(seed=3, partners=60, customers=400)
REALISTIC = WorkloadSpec(
    shape="realistic", seed=5, partners=30, customers=300, partner_change_rate=0.3, max_subscriptions=300
)
SPECS = pytest.mark.parametrize("base", [UNIFORM, REALISTIC], ids=["uniform", "realistic"])


def _with(base: WorkloadSpec, **fields: Any) -> WorkloadSpec:
    return WorkloadSpec(**{**base.__dict__, **fields})


def _items(spec: WorkloadSpec) -> list[EventDict | BadRecord]:
    return list(WorkloadGenerator(spec).events())


def _events(items: list[EventDict | BadRecord]) -> list[EventDict]:
    return [i for i in items if not isinstance(i, BadRecord)]


def _line(item: EventDict | BadRecord) -> bytes:
    if isinstance(item, BadRecord):
        return item.event.encode() if isinstance(item.event, str) else orjson.dumps(item.event)
    return orjson.dumps(item)


def _classified(items: list[EventDict | BadRecord], book: RuleBook) -> list[dict[str, Any]]:
    """Every decision `classify --rulebook <book> --as-of FAR_FUTURE` writes for the items."""
    out = io.BytesIO()
    classify_stream(
        [_line(i) for i in items], out, as_of=FAR_FUTURE, engine=Classifier(transactional=False, rulebook=book)
    )
    records = [orjson.loads(raw) for raw in out.getvalue().splitlines()]
    return [r for r in records if r["record_type"] == "subscription_decision"]


def _without_contract_11(item: EventDict | BadRecord) -> EventDict | BadRecord:
    """The item with the fields of contract 1.1 left out (a bad record's too: it copies a good one)."""
    if isinstance(item, BadRecord):
        if isinstance(item.event, str):
            return item
        return BadRecord(item.reason, {k: v for k, v in item.event.items() if k not in CONTRACT_11_FIELDS}, item.key)
    return {k: v for k, v in item.items() if k not in CONTRACT_11_FIELDS}


def _window_end(last_day: str) -> str:
    return (date.fromisoformat(last_day) + timedelta(days=1)).isoformat() + "T00:00:00Z"


@SPECS
def test_the_seed_mix_is_the_stream_without_any_contract_11_field(base: WorkloadSpec) -> None:
    """`MIXES["seed"]` gives record for record the stream of the spec's defaults, and no event names a field of
    contract 1.1."""
    seed = [_line(i) for i in _items(_with(base, **MIXES["seed"]))]
    assert seed == [_line(i) for i in _items(base)]
    assert not any(field.encode() in line for line in seed for field in CONTRACT_11_FIELDS)


@SPECS
def test_the_fields_alone_leave_every_event_as_it_was(base: WorkloadSpec) -> None:
    """With new commerce, Azure Expert MSPs and GDAP expiry but no extra Enterprise Agreement purchases, the
    stream holds the same records in the same order (bad ones included), each with at most the contract-1.1
    fields added."""
    plain = _items(base)
    mixed = _items(_with(base, nce_fraction=0.6, expert_msp_fraction=0.3, gdap_expiry=True))
    assert len(mixed) == len(plain)
    stripped = [_without_contract_11(i) for i in mixed]
    assert [_line(i) for i in stripped] == [_line(i) for i in plain]
    assert sum(any(f in e for f in CONTRACT_11_FIELDS) for e in _events(mixed)) > 100


@SPECS
def test_the_current_mix_gives_every_new_rule_and_both_timers(base: WorkloadSpec) -> None:
    """Classified under `current`, the `current` mix yields decisions of T1, T2, T3, E1 and E2, decisions fired at
    a cancellation window's end (WAIT_FOR_TERM_END) and at a GDAP expiry (REQUEST_DELEGATED_ADMIN_FOR_RESELLER
    back), each with no cause; under `seed` the same stream gives none of the new rules."""
    items = _items(_with(base, **MIXES["current"]))
    events = _events(items)
    decisions = _classified(items, CURRENT)
    rules = Counter(d["rule"] for d in decisions)
    assert all(rules[rule] > 0 for rule in ("T1", "T2", "T3", "E1", "E2")), rules
    windows = {
        (e["partner_id"], e["customer_id"], e["subscription_id"], _window_end(e["cancellation_allowed_until"]))
        for e in events
        if e.get("cancellation_allowed_until")
    }
    expiries = {(e["partner_id"], e["customer_id"], e["expires_at"]) for e in events if e.get("expires_at")}
    timed = [d for d in decisions if d["caused_by_event_id"] is None]
    window_closed = [
        d
        for d in timed
        if (d["partner_id"], d["customer_id"], d["subscription_id"], d["decided_at"]) in windows
        and "WAIT_FOR_TERM_END" in d["next_actions"]
    ]
    admin_expired = [
        d
        for d in timed
        if (d["partner_id"], d["customer_id"], d["decided_at"]) in expiries
        and "REQUEST_DELEGATED_ADMIN_FOR_RESELLER" in d["next_actions"]
    ]
    assert window_closed and admin_expired
    assert not {"T1", "T2", "T3", "E1", "E2"} & {d["rule"] for d in _classified(items, SEED)}


@SPECS
def test_new_commerce_windows_follow_the_term_start_and_some_are_open_at_purchase(base: WorkloadSpec) -> None:
    """Every license purchase of the mix names its commerce; an `nce` one's window ends `cancellation_days` after
    its term starts (its renewals' after the new term starts), and some windows are still open when the purchase
    is made while others have closed; usage purchases carry no commerce; every line parses."""
    events = _events(_items(_with(base, **MIXES["current"])))
    purchases = {e["subscription_id"]: e for e in events if e["event_type"] == "subscription_purchased"}
    licenses = [e for e in purchases.values() if e["billing_model"] == "license"]
    assert {e["commerce"] for e in licenses} == {"legacy", "nce"}
    assert not any("commerce" in e for e in purchases.values() if e["billing_model"] == "usage")
    nce = [e for e in licenses if e["commerce"] == "nce"]
    assert 0.5 < len(nce) / len(licenses) < 0.7
    for e in nce:
        assert date.fromisoformat(e["cancellation_allowed_until"]) == date.fromisoformat(e["term_start"]) + timedelta(7)
    assert not any("cancellation_allowed_until" in e for e in licenses if e["commerce"] == "legacy")
    open_at_purchase = [e for e in nce if _window_end(e["cancellation_allowed_until"]) > e["occurred_at"]]
    assert 0 < len(open_at_purchase) < len(nce)
    renewals = [e for e in events if e["event_type"] == "subscription_renewed"]
    for r in renewals:
        bought = purchases[r["subscription_id"]]
        if bought["commerce"] == "nce":
            new_start = date.fromisoformat(bought["term_end"])
            assert date.fromisoformat(r["cancellation_allowed_until"]) == new_start + timedelta(7)
        else:
            assert "cancellation_allowed_until" not in r
    for e in events:
        parse_event(e)


@SPECS
def test_expert_msp_partners_and_gdap_grants(base: WorkloadSpec) -> None:
    """`azure_expert_msp` is on every partner event of the mix, true only for some `csp_direct` partners; the
    extra Enterprise Agreement Azure purchases belong to those partners' accounts; every grant expires between
    `GDAP_DAYS` after it."""
    gen = WorkloadGenerator(_with(base, **MIXES["current"]))
    events = _events(list(gen.events()))
    partner_events = [e for e in events if e["event_type"] == "partner_program_changed"]
    assert all(isinstance(e["azure_expert_msp"], bool) for e in partner_events)
    flagged = [e for e in partner_events if e["azure_expert_msp"]]
    assert flagged and all(e["program"] == "csp_direct" and e["partner_id"] in gen.expert_msp for e in flagged)
    extra = [e for e in events if e["event_id"].startswith("ea-")]
    assert extra and all(e["partner_id"] in gen.expert_msp and e["channel"] == "enterprise_agreement" for e in extra)
    grants = [e for e in events if e["event_type"] == "delegated_admin_granted"]
    assert grants
    for g in grants:
        days = (parse_timestamp(g["expires_at"]) - parse_timestamp(g["occurred_at"])).total_seconds() / 86_400
        assert GDAP_DAYS[0] - 1 / 86_400 <= days <= GDAP_DAYS[1]


def test_spec_rejects_a_fraction_outside_0_to_1() -> None:
    """A mix fraction below 0 or above 1, or a negative cancellation window, is refused."""
    for field in ("nce_fraction", "expert_msp_fraction", "ea_azure_fraction"):
        for value in (-0.1, 1.5):
            wrong: dict[str, Any] = {field: value}
            with pytest.raises(ValueError, match=field):
                WorkloadSpec(**wrong)
    with pytest.raises(ValueError, match="cancellation_days"):
        WorkloadSpec(cancellation_days=-1)


def test_generate_mix_current_and_its_overrides() -> None:
    """`multichannel generate --mix current` writes the mix's fields; `--nce-fraction 0` leaves out `commerce`
    (every license `legacy`) and keeps the mix's other fields; `--mix` takes only seed and current."""
    args = ["generate", "--customers", "200", "--partners", "40", "--bad-rate", "0"]
    current = CliRunner().invoke(app, [*args, "--mix", "current"])
    assert current.exit_code == 0, current.output
    lines = [orjson.loads(line) for line in current.stdout_bytes.splitlines() if line.startswith(b"{")]
    assert {e.get("commerce") for e in lines if e.get("billing_model") == "license"} == {"legacy", "nce"}
    assert any("expires_at" in e for e in lines) and all("azure_expert_msp" in e for e in lines[:40])
    legacy = CliRunner().invoke(app, [*args, "--mix", "current", "--nce-fraction", "0"])
    assert legacy.exit_code == 0, legacy.output
    assert b'"commerce"' not in legacy.stdout_bytes and b'"expires_at"' in legacy.stdout_bytes
    assert CliRunner().invoke(app, [*args, "--mix", "newest"]).exit_code == 2
