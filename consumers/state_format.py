"""The changelog's own encoding of account state: one key per entity, compact, versioned, fast both ways.

The changelog is internal to the service, so it need not be the nested Avro record of
`schemas/account_state.avsc`. Format 0x03 keeps, as Kafka Streams' stores do, one key per entity, so that
a batch writes what it changed and no more, and compaction keeps the latest of each:

    account          `partner:customer`                 0x03 A [partner, customer, relationship, delegated_admin,
                                                                status, progress]
    subscription     `partner:customer` 0x1f s <id>     0x03 S [seller, pending deadline, progress or null] \n
                                                                [id, purchase, cancellation, renewal, verdict]
    partner view     `partner:customer` 0x1f v          0x03 V {"": rule book version, partner id: event id}
    dedup page       `partner:customer` 0x1f d <slot>   0x03 D [first position, event ids]

An account's *progress* is [seq, evaluated_at, open dedup page]: the count of event ids it has taken,
the clock of its latest evaluation, and its dedup window's ids since its last full page. An event writes
the subscription it moved, carrying the progress (a few hundred bytes, whatever the account holds); the
account's own record is written, with the progress, when its relationship, delegated admin or status
moves (or it is new, or no subscription moved), and a restore takes the latest progress (highest seq,
then latest clock) among the account's records. The partner view (what its verdicts depend on outside
it) is written when it is not the one last written. A partner change or a term end writes the
subscriptions whose verdict it moved. The dedup window (the account's last `dedup_window` event ids) is
kept in pages of `DEDUP_PAGE` ids: the open page in the progress, and each full page once, under slot
`page % page_slots(window)`. A restore reads the account records and only the header line of each
subscription (its seller for the partner index, its term end for the timers); the rest is decoded on the
account's first use. Flags are [active, occurred_at, event_id], events arrays of their fields (the
account's ids not repeated). Times are ISO 8601 in UTC ending in Z, dates YYYY-MM-DD. Codes (billing
model, channel, decision, reason, rule, next actions, customer status) are their index in the `CODES`
tables below; a table only ever grows at its end.

The first byte tells the formats apart, and every earlier one stays readable (an account restored from
one is written whole in 0x03 at its first change):
- 0x00: the Confluent framing of the Avro record of the first release (decoded through the registry by
  the caller);
- 0x01: one value per account, a header line and the account, codes as their names;
- 0x02: the same with codes as indexes and times ending in Z (`encode_account` still writes it, for
  tests that need a changelog an earlier release wrote; an account not in use is held as `freeze_account`
  makes it, its 0x03 values compressed).
A release before 0x03 cannot read it: it stops with a `StateFormatError` naming the format, so old and
new instances never share a group (docs/architecture.md, State and changelog: stop every instance, then
start the new release).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Final, NamedTuple

import orjson

from multichannel.engine import Held, SavedView
from multichannel.model import (
    CSP_PROGRAMS,
    BillingModel,
    Channel,
    Commerce,
    CustomerStatus,
    Decision,
    NextAction,
    Program,
    Reason,
    Rule,
    SubscriptionCancelled,
    SubscriptionPurchased,
    SubscriptionRenewed,
)
from multichannel.partners import PartnerEntry
from multichannel.state import (
    Account,
    AccountFields,
    AccountState,
    Flag,
    StatusSnapshot,
    Subscription,
    SubscriptionState,
    Verdict,
)

AVRO_FORMAT: Final = 0
"""First byte of a value in the Confluent-framed Avro form (the magic byte)."""
COMPACT_V1: Final = 1
COMPACT_V2: Final = 2
_V2 = bytes([COMPACT_V2])

CODES: Final[dict[type[Enum], tuple[str, ...]]] = {
    BillingModel: ("license", "usage"),
    Channel: ("microsoft_direct", "advisor", "open", "enterprise_agreement", "csp", "third_party", "syndication"),
    Decision: (
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "BLOCKED_UNTIL_TERM_END",
        "MIGRATION_REQUIRED",
        "CSP_SWITCH_PERMITTED",
        "ALREADY_MANAGED",
        "RESALE_NOT_PERMITTED",
        "NOT_APPLICABLE",
    ),
    Reason: (
        "CUSTOMER_IS_CSP_PARTNER",
        "PARTNER_NOT_IN_CSP",
        "SOLD_BY_ACCOUNT_PARTNER",
        "SYNDICATION_CHANNEL",
        "SUBSCRIPTION_CANCELLED",
        "TERM_ENDED",
        "AZURE_FROM_OTHER_CSP_PARTNER",
        "LICENSE_HELD_BY_OTHER_CSP_PARTNER",
        "NO_CSP_MIGRATION_PATH",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
        "PURCHASED_FROM_PARTNER_AS_ADVISOR",
        "PURCHASED_FROM_NON_CSP_THIRD_PARTY",
        "RESELLER_WITHOUT_INDIRECT_PROVIDER",
        "NCE_TRANSFER_AVAILABLE",
        "EA_BILLING_TRANSFER_AVAILABLE",
        "TRANSFER_NEEDS_RELATIONSHIP",
    ),
    Rule: ("R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8", "R9", "R10", "T1", "T2", "T3", "E1", "E2"),
    NextAction: (
        "OFFER_CSP_SUBSCRIPTION",
        "REQUEST_AZURE_PARTNER_SWITCH",
        "WAIT_FOR_TERM_END_OR_CANCELLATION",
        "CREATE_CSP_AZURE_SUBSCRIPTION",
        "PORT_DATA_AND_SETTINGS",
        "CUSTOMER_CANCELS_OLD_SUBSCRIPTION",
        "CHECK_SERVICE_AVAILABILITY_IN_CSP",
        "SEND_RELATIONSHIP_REQUEST",
        "OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER",
        "SEND_PROVIDER_INVITATION_TO_CUSTOMER",
        "REQUEST_DELEGATED_ADMIN_FOR_RESELLER",
        "SUPPORT_UNDER_RELATIONSHIP",
        "LINK_INDIRECT_PROVIDER",
        "REQUEST_PARTNER_TRANSFER",
        "REQUEST_EA_BILLING_TRANSFER",
        "SEND_RESELLER_INVITATION_TO_CUSTOMER",
        "WAIT_FOR_TERM_END",
    ),
    CustomerStatus: ("MULTICHANNEL", "SINGLE_CHANNEL", "NOT_ELIGIBLE"),
}
"""Format 0x02's code tables: a code is written as its index here. Indexes never change: a new member of
one of these enums is added at the end of its table (a unit test holds every member to a place)."""

_INDEX = {enum: {code: i for i, code in enumerate(codes)} for enum, codes in CODES.items()}
_BILLING_IX, _CHANNEL_IX, _DECISION_IX = _INDEX[BillingModel], _INDEX[Channel], _INDEX[Decision]
_REASON_IX, _RULE_IX, _ACTION_IX, _STATUS_IX = _INDEX[Reason], _INDEX[Rule], _INDEX[NextAction], _INDEX[CustomerStatus]


class _Tables(NamedTuple):
    """How a format writes codes, for the reader: a lookup from what is written to the member."""

    billing: Any
    channel: Any
    decision: Any
    reason: Any
    rule: Any
    action: Any
    status: Any


def _tables(lookup: Callable[[type[Enum]], Any]) -> _Tables:
    return _Tables(*(lookup(e) for e in (BillingModel, Channel, Decision, Reason, Rule, NextAction, CustomerStatus)))


_READ_TABLES = {
    COMPACT_V1: _tables(lambda enum: {m.value: m for m in enum}),  # codes by name
    COMPACT_V2: _tables(lambda enum: tuple(enum(code) for code in CODES[enum])),  # codes by index
}
_UTC_Z = orjson.OPT_UTC_Z
_LEGACY = Commerce.LEGACY
_COMMERCE = {m.value: m for m in Commerce}


class StateFormatError(ValueError):
    """A changelog value in no format this release reads."""


def _flag(f: Flag | None) -> list[Any] | None:
    """[active, occurred_at, event_id], then a grant's GDAP expiry when it has one (contract 1.1)."""
    if f is None:
        return None
    if f.expires_at is None:
        return [f.active, f.occurred_at, f.event_id]
    return [f.active, f.occurred_at, f.event_id, f.expires_at]


def _verdict(v: Verdict | None) -> tuple[Any, ...] | None:
    if v is None:
        return None
    decision, reason, rule, actions, blocked_until, via = v  # unpacked: cheaper than six field reads
    return (
        _DECISION_IX[decision._value_],
        _REASON_IX[reason._value_],
        _RULE_IX[rule._value_],
        [_ACTION_IX[a._value_] for a in actions] if actions else (),
        blocked_until,
        via,
    )


class Header(NamedTuple):
    """What a restore reads of a value without decoding the account."""

    partner_id: str
    customer_id: str
    sellers: list[str]
    deadlines: list[datetime]
    partner_view: SavedView | None
    evaluated_at: datetime | None


def _subscription(s: Subscription) -> tuple[Any, ...]:
    """A subscription as format 0x02 and 0x03 write it: [id, purchase, cancellation, renewal, verdict]. Contract
    1.1's fields follow the fields of a purchase ([commerce, cancellation_allowed_until]) or a renewal
    ([cancellation_allowed_until]) only when one is not its default, so that what an earlier release wrote
    reads as the defaults and a stream without them costs no byte more."""
    p, c, r = s.purchase, s.cancellation, s.renewal
    return (
        s.subscription_id,
        None if p is None else _purchase(p),
        None if c is None else (c.event_id, c.occurred_at),
        None
        if r is None
        else (r.event_id, r.occurred_at, r.term_end)
        if r.cancellation_allowed_until is None
        else (r.event_id, r.occurred_at, r.term_end, r.cancellation_allowed_until),
        _verdict(s.verdict),
    )


def _purchase(p: SubscriptionPurchased) -> tuple[Any, ...]:
    fields = (
        p.event_id,
        p.occurred_at,
        p.offer_id,
        _BILLING_IX[p.billing_model._value_],
        _CHANNEL_IX[p.channel._value_],
        p.seller_partner_id,
        p.quantity,
        p.term_start,
        p.term_end,
    )
    if p.commerce is _LEGACY and p.cancellation_allowed_until is None:
        return fields
    return (*fields, p.commerce._value_, p.cancellation_allowed_until)


def _status(acct: Account) -> list[Any] | None:
    st = acct.status
    return None if st is None else [_STATUS_IX[st._value_], sorted(acct.counts.items())]


def encode_account(acct: Account, partner_view: SavedView) -> bytes:
    """One account, read from the engine's working copy (no snapshot is made), as a single value of
    format 0x02 (`partner_view` is `Classifier.partner_view` of the account). The changelog is written in
    format 0x03 (`entity_records`); this whole-account form is what the earlier release wrote, kept so that
    tests can write such a changelog."""
    sellers: set[str] = set()
    pending: list[datetime] = []
    passed = acct.evaluated_at
    for s in acct.subscriptions.values():
        p = s.purchase
        if p is not None and p.seller_partner_id is not None:
            sellers.add(p.seller_partner_id)
        deadline = s.deadline
        if deadline is not None and (passed is None or deadline > passed) and deadline not in pending:
            pending.append(deadline)
    subs = [_subscription(s) for s in acct.subscriptions.values()]
    header = orjson.dumps(
        [acct.partner_id, acct.customer_id, sorted(sellers), pending, partner_view, passed], None, _UTC_Z
    )
    return (
        _V2
        + header
        + b"\n"
        + orjson.dumps(
            [
                acct.partner_id,
                acct.customer_id,
                _flag(acct.relationship),
                _flag(acct.delegated_admin),
                subs,
                _status(acct),
                acct.recent,
                acct.evaluated_at,
            ],
            None,
            _UTC_Z,
        )
    )


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _flag_in(f: list[Any] | None) -> Flag | None:
    if f is None:
        return None
    return Flag(f[0], _ts(f[1]), f[2], _ts(f[3]) if len(f) > 3 and f[3] is not None else None)


def _check(value: bytes) -> _Tables:
    """The code tables of the value's format (StateFormatError for a format this reader does not know)."""
    tables = _READ_TABLES.get(value[0]) if value else None
    if tables is None:
        raise StateFormatError(f"changelog value format {value[:1].hex() or 'empty'} is not 01 or 02")
    return tables


def read_header(value: bytes) -> Header:
    """The header of one value of format 0x01 or 0x02 (StateFormatError for any other): `read_headers`
    of that value alone."""
    [(pid, cid, sellers, deadlines, view, _value)], evaluated = read_headers([value])
    return Header(pid, cid, list(sellers), list(deadlines), view, evaluated)


def read_headers(values: Sequence[bytes]) -> tuple[list[Held], datetime | None]:
    """The headers of many values of format 0x01 or 0x02, as `Classifier.hold_all` takes them (each distinct
    time parsed once), and the latest `evaluated_at` among them."""
    for value in values:
        _check(value)
    loads = orjson.loads
    heads = [loads(v[1 : v.index(b"\n")]) for v in values]
    times: dict[str, datetime] = {}
    latest: datetime | None = None
    held: list[Held] = []
    for (pid, cid, sellers, deadlines, view, evaluated), value in zip(heads, values, strict=True):
        due = []
        for text in deadlines:
            at = times.get(text)
            if at is None:
                at = times[text] = _ts(text)
            due.append(at)
        held.append((pid, cid, sellers, due, view, value))
        if evaluated is not None:
            at = times.get(evaluated)
            if at is None:
                at = times[evaluated] = _ts(evaluated)
            if latest is None or at > latest:
                latest = at
    return held, latest


def _subscription_in(
    pid: str, cid: str, sub: list[Any], billing: Any, channel: Any, decision: Any, reason: Any, rule: Any, action: Any
) -> SubscriptionState:
    """`_subscription`'s list back as the subscription (the account's ids are not repeated in it)."""
    sid, p, c, r, v = sub
    return SubscriptionState(
        sid,
        None
        if p is None
        else SubscriptionPurchased(
            p[0],
            _ts(p[1]),
            pid,
            cid,
            sid,
            p[2],
            billing[p[3]],
            channel[p[4]],
            p[5],
            p[6],
            _day(p[7]),
            _day(p[8]),
            *(() if len(p) < 10 else (_COMMERCE[p[9]], _day(p[10]))),
        ),
        None if c is None else SubscriptionCancelled(c[0], _ts(c[1]), pid, cid, sid),
        None
        if r is None
        else SubscriptionRenewed(
            r[0], _ts(r[1]), pid, cid, sid, date.fromisoformat(r[2]), _day(r[3]) if len(r) > 3 else None
        ),
        None
        if v is None
        else Verdict(
            decision[v[0]],
            reason[v[1]],
            rule[v[2]],
            tuple([action[a] for a in v[3]]),
            _day(v[4]),
            tuple(v[5]),
        ),
    )


def decode_state(value: bytes) -> AccountState:
    """A changelog value of format 0x01 or 0x02 as the account it holds (StateFormatError for any other)."""
    billing, channel, decision, reason, rule, action, status = _check(value)
    pid, cid, rel, admin, subs_in, st, recent, evaluated = orjson.loads(value[value.index(b"\n") + 1 :])
    subs = {
        sub[0]: _subscription_in(pid, cid, sub, billing, channel, decision, reason, rule, action) for sub in subs_in
    }
    return AccountState(
        pid,
        cid,
        _flag_in(rel),
        _flag_in(admin),
        subs,
        None if st is None else StatusSnapshot(status[st[0]], tuple((k, n) for k, n in st[1])),
        tuple(recent),
        None if evaluated is None else _ts(evaluated),
    )


# ---------------------------------------------------------------------------------------------- format 0x03
COMPACT_V3: Final = 3
ENTITY_SEPARATOR: Final = b"\x1f"
"""Between an account's key and the rest of the key of one of its entities (no id holds it: `KEY_SAFE`)."""
_ACCOUNT_V3, _SUBSCRIPTION_V3, _PAGE_V3, _VIEW_V3 = b"\x03A", b"\x03S", b"\x03D", b"\x03V"
_S, _D, _V = _SUBSCRIPTION_V3[1], _PAGE_V3[1], _VIEW_V3[1]
DEDUP_PAGE: Final = 16
"""Event ids per dedup page: a page is written once, when its last id is appended."""


def subscription_key(account_key: bytes, subscription_id: str) -> bytes:
    """The changelog key of one subscription of the account keyed `account_key`."""
    return account_key + b"\x1fs" + subscription_id.encode()


def dedup_page_key(account_key: bytes, slot: int) -> bytes:
    """The changelog key of one slot of the account's dedup pages (slots are reused round the window)."""
    return account_key + b"\x1fd" + str(slot).encode()


def page_slots(window: int) -> int:
    """Slots of dedup pages per account: enough that no page still in the window shares one with another."""
    return window // DEDUP_PAGE + 2


def view_key(account_key: bytes) -> bytes:
    """The changelog key of an account's partner view (written when it changes, not with every event)."""
    return account_key + b"\x1fv"


def entity_records(
    account_key: bytes,
    acct: Account,
    subscription_ids: Sequence[str],
    appended: int,
    window: int,
    *,
    fields_moved: bool = True,
    partner_view: SavedView | None = None,
    whole: bool = False,
) -> list[tuple[bytes, bytes]]:
    """What one batch changed in an account, as changelog (key, value) pairs of format 0x03, the cost following
    what changed, never the account's size:
    - its own record when its fields moved (relationship, delegated admin, status), when it is new, or when no
      subscription moved; it carries the account's *progress* (its sequence, `evaluated_at` and open dedup
      page);
    - the subscriptions in `subscription_ids`; when the account's own record is not written, the last of them
      carries the progress instead (a restore takes the latest progress among an account's records);
    - the dedup pages its `appended` event ids completed;
    - `partner_view` when it is given (the caller writes it when it differs from the one last written).
    `whole` writes everything (an account restored from an earlier format, written in this one the first time)."""
    seq, recent = acct.seq, acct.recent
    first_held = seq - len(recent)  # the position (in the account's life) of recent[0]
    tail_from = max(first_held, seq - seq % DEDUP_PAGE)
    progress = [seq, acct.evaluated_at, recent[tail_from - first_held :]]
    subs = acct.subscriptions
    ids: Iterable[str] = subs if whole else subscription_ids
    out: list[tuple[bytes, bytes]] = []
    if whole or fields_moved or not subscription_ids:
        out.append((account_key, _account_value(acct, progress)))
        for sid in ids:
            out.append((subscription_key(account_key, sid), _subscription_value(subs[sid], None)))
    else:
        last = subscription_ids[-1]
        for sid in subscription_ids:
            out.append(
                (subscription_key(account_key, sid), _subscription_value(subs[sid], progress if sid == last else None))
            )
    if partner_view is not None:
        out.append((view_key(account_key), _VIEW_V3 + orjson.dumps(partner_view)))
    slots = page_slots(window)
    done_from = first_held if whole else max(first_held, seq - appended)
    for page in range(done_from // DEDUP_PAGE, seq // DEDUP_PAGE):  # the pages completed meanwhile
        start = max(page * DEDUP_PAGE, first_held)
        page_ids = recent[start - first_held : (page + 1) * DEDUP_PAGE - first_held]
        out.append((dedup_page_key(account_key, page % slots), _PAGE_V3 + orjson.dumps([start, page_ids])))
    return out


def _account_value(acct: Account, progress: list[Any]) -> bytes:
    """An account's own 0x03 record: [partner, customer, relationship, delegated_admin, status, progress]."""
    return _ACCOUNT_V3 + orjson.dumps(
        [
            acct.partner_id,
            acct.customer_id,
            _flag(acct.relationship),
            _flag(acct.delegated_admin),
            None if acct.status is None else _STATUS_IX[acct.status._value_],
            progress,
        ],
        None,
        _UTC_Z,
    )


def _subscription_value(sub: Subscription, progress: list[Any] | None) -> bytes:
    """A subscription's 0x03 value: a header line [seller, pending deadline, the account's progress or null]
    that a restore reads without decoding the rest, then the subscription as format 0x02 writes it."""
    p = sub.purchase
    head = [None if p is None else p.seller_partner_id, sub.deadline, progress]
    if sub.window_end is not None:  # contract 1.1: the cancellation window's end, a timer of `current`
        head.append(sub.window_end)
    return _SUBSCRIPTION_V3 + orjson.dumps(head, None, _UTC_Z) + b"\n" + orjson.dumps(_subscription(sub), None, _UTC_Z)


_JOIN = b"\x00"
"""Between the values of a held account's blob (orjson never writes a raw NUL: it escapes it)."""
_FROZEN = b"\x03Z"


def freeze_account(acct: Account) -> bytes:
    """An account in use as the compact bytes it is held as while it is not (`Classifier.keep_in_use`): its
    0x03 values (its own record with the whole dedup window as its open page, then every subscription),
    joined and compressed at zlib's fastest level: a held account takes less memory, and thawing it at its
    next use stays cheap."""
    values = [_account_value(acct, [acct.seq, acct.evaluated_at, acct.recent])]
    values += [_subscription_value(sub, None) for sub in acct.subscriptions.values()]
    return _FROZEN + zlib.compress(_JOIN.join(values), 1)


_NEVER = datetime.min.replace(tzinfo=UTC)


class _Times(dict[str, datetime]):
    """Each distinct time text parsed once (a restore meets the same few term ends and clocks many times)."""

    def __missing__(self, text: str) -> datetime:
        at = self[text] = _ts(text)
        return at


def _progress_order(progress: list[Any], times: _Times) -> tuple[int, datetime]:
    """Which of an account's records holds its latest progress: the highest sequence, then the latest clock."""
    evaluated = progress[1]
    return (progress[0], _NEVER if evaluated is None else times[evaluated])


def read_entities(
    accounts: dict[bytes, bytes], entities: dict[bytes, list[bytes]]
) -> tuple[list[Held], datetime | None]:
    """What `Classifier.hold_all` takes of restored 0x03 accounts (their own records by key, and each key's
    entity values), reading only the subscriptions' header lines; and the latest `evaluated_at` among them.
    An account's progress (its clock, which decides the term ends it has not passed) is the latest among its
    records. An entity whose account record is absent is left out (none is written without one)."""
    loads = orjson.loads
    times = _Times()
    latest = _NEVER
    held: list[Held] = []
    no_entities: list[bytes] = []
    for key, value in accounts.items():
        if not value.startswith(_ACCOUNT_V3):
            raise StateFormatError(f"changelog value format {value[:2].hex()} is not an 0x03 account record")
        fields = loads(value[2:])
        order = _progress_order(fields[5], times)
        admin = fields[3]  # a GDAP expiry is a timer of the account's own
        deadlines = {admin[3]} if admin is not None and admin[0] and len(admin) > 3 and admin[3] is not None else set()
        sellers: set[str] = set()
        view = None
        parts = entities.get(key, no_entities)
        for v in parts:
            kind = v[1]
            if kind == _S:
                seller, deadline, progress, *window_end = loads(v[2 : v.index(b"\n")])
                if seller is not None:
                    sellers.add(seller)
                if deadline is not None:
                    deadlines.add(deadline)
                if window_end:
                    deadlines.add(window_end[0])
                if progress is not None and (later := _progress_order(progress, times)) > order:
                    order = later
            elif kind == _V:
                view = loads(v[2:])
        passed = order[1]
        latest = max(latest, passed)
        due = sorted(at for d in deadlines if (at := times[d]) > passed)
        held.append((fields[0], fields[1], sorted(sellers), due, view, _JOIN.join([value, *parts])))
    return held, None if latest is _NEVER else latest


def decode_entities(blob: bytes, window: int) -> Account:
    """A held 0x03 account (its values joined: its own record first, as `read_entities` and
    `freeze_account` hold it) as the engine's working copy: its progress the latest among its records, its
    dedup window the last `window` ids its pages and open page hold."""
    record, *parts = blob.split(_JOIN)
    pid, cid, rel, admin, status, progress = orjson.loads(record[2:])
    billing, channel, decision, reason, rule, action, statuses = _READ_TABLES[COMPACT_V2]
    loads = orjson.loads
    times = _Times()
    order = _progress_order(progress, times)
    subs: list[SubscriptionState] = []
    pages: list[tuple[int, list[str]]] = []
    for v in parts:
        kind = v[1]
        if kind == _S:
            cut = v.index(b"\n")
            carried = loads(v[2:cut])[2]
            if carried is not None and (later := _progress_order(carried, times)) > order:
                progress, order = carried, later
            sub = loads(v[cut + 1 :])
            subs.append(_subscription_in(pid, cid, sub, billing, channel, decision, reason, rule, action))
        elif kind == _D:
            first, ids = loads(v[2:])
            pages.append((first, ids))
        elif kind != _V:
            raise StateFormatError(f"changelog entity of account {pid}:{cid} has an unknown kind {v[:2].hex()}")
    subs.sort(key=_by_id)
    seq, evaluated, tail = progress
    return Account.build(
        AccountFields(
            pid,
            cid,
            _flag_in(rel),
            _flag_in(admin),
            None if status is None else StatusSnapshot(statuses[status], ()),
            None if evaluated is None else times[evaluated],
        ),
        subs,
        _recent(pages, tail, seq, window),
        seq,
    )


def _by_id(sub: SubscriptionState) -> str:
    return sub.subscription_id


def _recent(pages: list[tuple[int, list[str]]], tail: list[str], seq: int, window: int) -> list[str]:
    """The dedup window's ids, oldest first: the run of positions that ends at `seq`, at most `window` long,
    from the pages (each [first position, ids]; a slot may still hold a page older than the window) and
    the open page."""
    expected = max(0, seq - window)
    out: list[str] = []
    for first, ids in (*sorted(pages), (seq - len(tail), tail)):
        end = first + len(ids)
        if end <= expected:
            continue  # out of the window
        if first > expected:  # a page older than this one is missing: the window starts here
            out.clear()
        out.extend(ids[max(0, expected - first) :])
        expected = end
    return out[-window:] if len(out) > window else out


def thaw(payload: object, window: int) -> AccountState | Account:
    """A held account's saved bytes as its state: a whole value of format 0x01 or 0x02, a restored 0x03
    account's values (`read_entities`), or a frozen account (`freeze_account`). The store's `Thaw`, with
    the engine's dedup window bound."""
    if not isinstance(payload, bytes):
        raise StateFormatError(f"a held account is bytes, not {type(payload).__name__}")
    head = payload[:2]
    if head == _ACCOUNT_V3:
        return decode_entities(payload, window)
    if head == _FROZEN:
        return decode_entities(zlib.decompress(payload[2:]), window)
    return decode_state(payload)


PARTNER_ENTRY_FORMAT: Final = b"\x03P"
"""First bytes of a partner-table value (`encode_partner_entry`)."""


def encode_partner_entry(partner_id: str, entry: PartnerEntry) -> bytes:
    """A partner-table value: `0x03 P` and [partner, program, providers, occurred_at, event_id, recent_ids], then
    `true` when the partner is an Azure Expert MSP (contract 1.1; absent, as an earlier release wrote it, is false)."""
    occurred_at, event_id = entry.order
    fields: list[Any] = [
        partner_id,
        entry.program._value_,
        entry.indirect_provider_ids,
        occurred_at,
        event_id,
        entry.recent_event_ids,
    ]
    if entry.azure_expert_msp:
        fields.append(True)
    return PARTNER_ENTRY_FORMAT + orjson.dumps(fields, None, _UTC_Z)


def decode_partner_entry(value: bytes) -> tuple[str, PartnerEntry]:
    """The partner id and entry of a partner-table value (StateFormatError for any other value)."""
    if not value.startswith(PARTNER_ENTRY_FORMAT):
        raise StateFormatError(f"partner table value format {value[:2].hex() or 'empty'} is not 0350")
    pid, program_code, providers, occurred_at, event_id, recent, *more = orjson.loads(value[2:])
    program = Program(program_code)
    return pid, PartnerEntry(
        program,
        tuple(providers),
        (_ts(occurred_at), event_id),
        event_id,
        tuple(recent),
        program in CSP_PROGRAMS,
        bool(more and more[0]),
    )
