"""Contract 1.1's fields in the changelog (format 0x03, `consumers/state_format.py`): a purchase's commerce and
cancellation window, a renewal's window, a grant's GDAP expiry and a partner entry's Azure Expert MSP mark
survive a restore (and the whole-account, frozen and partner-table forms), so do the two timers of `current`
that read them; values written without them, as every earlier release wrote them, read as the defaults."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from consumers.changelog import RestoredPartition
from consumers.state_format import (
    decode_partner_entry,
    decode_state,
    encode_account,
    encode_partner_entry,
    freeze_account,
    thaw,
)
from consumers.store import AccountStore
from multichannel.engine import Classifier
from multichannel.model import (
    BillingModel,
    Channel,
    Commerce,
    DelegatedAdminGranted,
    Event,
    PartnerProgramChanged,
    Program,
    RelationshipAccepted,
    SubscriptionPurchased,
    SubscriptionRenewed,
)
from multichannel.partners import PartnerEntry
from multichannel.records import OutputRecord
from multichannel.rulebooks import CURRENT
from multichannel.state import Account, AccountState
from tests.unit.test_changelog_layout import DATA, PARTITION, avro_states, batch, compacted, states
from tests.unit.test_engine_restore import fixture_run

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RESELLER = ("P1", "C1")
DIRECT = ("P2", "C2")
EXPIRES = datetime(2026, 5, 1, 12, 30, 15, tzinfo=UTC)


def store() -> AccountStore:
    s = AccountStore(Classifier(rulebook=CURRENT), input_partitions=1, decode_legacy=avro_states)
    s.owned.add(PARTITION)
    return s


def restored(values: dict[bytes, bytes], partners: Classifier) -> AccountStore:
    """A `current` store restored from the compacted changelog `values`, sharing `partners`' partner table."""
    s = AccountStore(
        Classifier(rulebook=CURRENT, partners=partners.partners), input_partitions=1, decode_legacy=avro_states
    )
    s.assign([RestoredPartition(PARTITION, dict(values), len(values), 0.0)], T0)
    return s


def purchase(
    eid: str, key: tuple[str, str], sid: str, commerce: Commerce = Commerce.LEGACY, window: date | None = None
) -> SubscriptionPurchased:
    return SubscriptionPurchased(
        eid,
        T0,
        key[0],
        key[1],
        sid,
        "O365",
        BillingModel.LICENSE,
        Channel.OPEN,
        None,
        5,
        date(2026, 1, 1),
        date(2027, 1, 1),
        commerce,
        window,
    )


def new_fields_stream() -> list[Event]:
    """A reseller account (NCE window, a renewal's window, a legacy purchase, a GDAP grant that expires, a
    relationship) and a direct partner account under an Azure Expert MSP."""
    at = T0 + timedelta(hours=1)
    return [
        PartnerProgramChanged("pe-1", T0, "P1", Program.CSP_INDIRECT_RESELLER, ("D1",)),
        PartnerProgramChanged("pe-2", T0, "P2", Program.CSP_DIRECT, (), True),
        purchase("e1", RESELLER, "S1", Commerce.NCE, date(2026, 4, 15)),
        purchase("e2", RESELLER, "S2", Commerce.NCE),
        SubscriptionRenewed("e3", at, "P1", "C1", "S2", date(2028, 1, 1), date(2026, 6, 10)),
        purchase("e4", RESELLER, "S3"),
        RelationshipAccepted("e5", at, "P1", "C1"),
        DelegatedAdminGranted("e6", at, "P1", "C1", EXPIRES),
        purchase("e7", DIRECT, "S1", Commerce.NCE),
    ]


def test_the_new_fields_survive_a_restore_from_the_changelog() -> None:
    """An account's commerce, windows (purchase and renewal) and GDAP expiry, written to the 0x03 changelog and
    restored, are what the live account holds."""
    live = store()
    values = compacted(batch(live, new_fields_stream(), T0 + timedelta(hours=1)))
    got = states(restored(values, live.classifier))
    assert got == states(live)
    reseller = got[RESELLER]
    subs = reseller.subscriptions
    s1, s2, s3 = (subs[s].purchase for s in ("S1", "S2", "S3"))
    assert s1 is not None and (s1.commerce, s1.cancellation_allowed_until) == (Commerce.NCE, date(2026, 4, 15))
    assert s2 is not None and (s2.commerce, s2.cancellation_allowed_until) == (Commerce.NCE, None)
    assert s3 is not None and (s3.commerce, s3.cancellation_allowed_until) == (Commerce.LEGACY, None)
    renewal = subs["S2"].renewal
    assert renewal is not None and renewal.cancellation_allowed_until == date(2026, 6, 10)
    assert reseller.delegated_admin is not None and reseller.delegated_admin.expires_at == EXPIRES


def _timer_records(s: AccountStore, until: datetime) -> list[OutputRecord]:
    s.begin()
    records = s.classifier.fire_due(until)
    s.commit()
    return records


def test_a_restored_account_fires_its_window_ends_and_gdap_expiry_as_the_live_one() -> None:
    """Held undecoded, a restored account is scheduled at its NCE window ends and its GDAP expiry (read from the
    changelog's headers and account record): the timers then emit what the live account's do."""
    live = store()
    values = compacted(batch(live, new_fields_stream(), T0 + timedelta(hours=1)))
    again = restored(values, live.classifier)
    assert again.classifier.held == 2
    assert sorted(again.classifier.deadlines) == sorted(live.classifier.deadlines)
    want = [r.to_dict() for r in _timer_records(live, datetime(2026, 12, 1, tzinfo=UTC))]
    assert [r.to_dict() for r in _timer_records(again, datetime(2026, 12, 1, tzinfo=UTC))] == want
    fired_at = {r["decided_at"] for r in want}
    assert {datetime(2026, 4, 16, tzinfo=UTC), EXPIRES, datetime(2026, 6, 11, tzinfo=UTC)} <= fired_at


def _live_accounts() -> dict[tuple[str, str], Account]:
    engine = Classifier(rulebook=CURRENT, transactional=False)
    for ev in new_fields_stream():
        engine.apply(ev, T0 + timedelta(hours=1))
    return {key: Account.restore(state) for key in engine if (state := engine.get(key)) is not None}


@pytest.mark.parametrize(
    "form",
    [
        lambda acct: thaw(freeze_account(acct), 256),
        lambda acct: decode_state(encode_account(acct, "")),
    ],
    ids=["frozen-account", "whole-account-0x02"],
)
def test_the_other_account_forms_keep_the_new_fields(form: Callable[[Account], AccountState | Account]) -> None:
    """An account frozen past the in-use limit, and the whole-account form, read back with its new fields."""
    for acct in _live_accounts().values():
        back = form(acct)
        state = back.snapshot() if isinstance(back, Account) else back
        assert isinstance(state, AccountState)
        assert state.subscriptions == acct.snapshot().subscriptions
        assert state.delegated_admin == acct.delegated_admin


@pytest.mark.parametrize("expert", [True, False])
def test_a_partner_entry_round_trips_its_azure_expert_msp_mark(expert: bool) -> None:
    """A partner-table value keeps the partner's Azure Expert MSP mark, and writes nothing for it when false."""
    order = (T0, "pe-9")
    entry = PartnerEntry(Program.CSP_DIRECT, (), order, "pe-9", ("pe-9",), True, expert)
    value = encode_partner_entry("P9", entry)
    assert decode_partner_entry(value) == ("P9", entry)
    assert len(orjson.loads(value[2:])) == (7 if expert else 6)


def test_a_partner_entry_written_before_the_mark_reads_as_not_expert() -> None:
    """A partner-table value as the earlier release wrote it (six fields) reads with azure_expert_msp false."""
    value = b"\x03P" + orjson.dumps(["P9", "csp_indirect_reseller", ["D1"], "2026-01-01T00:00:00Z", "pe-1", ["pe-1"]])
    pid, entry = decode_partner_entry(value)
    assert (pid, entry.program, entry.indirect_provider_ids, entry.azure_expert_msp) == (
        "P9",
        Program.CSP_INDIRECT_RESELLER,
        ("D1",),
        False,
    )


def test_a_stream_without_the_new_fields_writes_the_earlier_layout() -> None:
    """Without contract 1.1's fields a purchase is written as its nine fields, a renewal as three and a flag as
    three, as before: nothing more is written for the defaults."""
    s = store()
    evs: list[Event] = [
        purchase("e1", RESELLER, "S1"),
        SubscriptionRenewed("e2", T0, "P1", "C1", "S1", date(2028, 1, 1)),
        DelegatedAdminGranted("e3", T0, "P1", "C1"),
    ]
    values = compacted(batch(s, evs, T0))
    sub = orjson.loads(values[b"P1:C1\x1fsS1"].split(b"\n", 1)[1])
    head = orjson.loads(values[b"P1:C1\x1fsS1"][2:].split(b"\n", 1)[0])
    account = orjson.loads(values[b"P1:C1"][2:])
    assert (len(sub[1]), len(sub[3]), len(account[3]), len(head)) == (9, 3, 3, 3)


@pytest.mark.parametrize("name", ["changelog_v0.jsonl", "changelog_v1.jsonl", "changelog_v2.jsonl"])
def test_values_written_by_earlier_releases_read_as_the_defaults(name: str) -> None:
    """Every purchase of the earlier releases' fixtures restores as legacy commerce without a window, every
    renewal without a window and every delegated-admin flag without an expiry (and the fixtures hold some)."""
    engine, _clock = fixture_run()
    lines = [json.loads(line) for line in (DATA / name).open()]
    values = {f"{a}:{b}".encode(): base64.b64decode(line["value"]) for line in lines for a, b in [line["key"]]}
    got = states(restored(values, engine))
    subs = [sub for state in got.values() for sub in state.subscriptions.values()]
    purchases = [sub.purchase for sub in subs if sub.purchase is not None]
    renewals = [sub.renewal for sub in subs if sub.renewal is not None]
    flags = [state.delegated_admin for state in got.values() if state.delegated_admin is not None]
    assert purchases and renewals and flags
    assert {(p.commerce, p.cancellation_allowed_until) for p in purchases} == {(Commerce.LEGACY, None)}
    assert {r.cancellation_allowed_until for r in renewals} == {None}
    assert {f.expires_at for f in flags} == {None}
