"""The service's own partner table: the owner of a partner partition writes each partner's winning entry (by
occurred_at, event_id) to the partner table topic, whatever order the partner records arrived in, and a
new owner writes what its predecessor had not. Driven through `BatchProcessor.process` with fake records
(no broker)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from consumers.batch import BatchOutput, BatchProcessor
from consumers.metrics import BatchTally
from consumers.state_format import decode_partner_entry, encode_partner_entry
from consumers.store import AccountStore
from multichannel.engine import Classifier
from multichannel.errors import InvalidEvent, UnknownEventType
from multichannel.model import Event, PartnerProgramChanged, Program
from multichannel.partners import PartnerEntry, PartnerTable

NOW = datetime(2026, 7, 1, tzinfo=UTC)


@dataclass
class FakeRecord:
    """A consumed record's accessors, as the processor reads them; the codec hands `event` through (an
    `InvalidEvent` for a bad record, whose value is then its raw bytes)."""

    event: Event | InvalidEvent
    part: int
    off: int

    def value(self) -> Any:
        return b"bad bytes" if isinstance(self.event, InvalidEvent) else self.event

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def headers(self) -> None:
        return None

    def key(self) -> bytes:
        return b""

    def partition(self) -> int:
        return self.part

    def offset(self) -> int:
        return self.off

    def topic(self) -> str:
        return "partners"


class FakeCodec:
    """Hands the records' events through and encodes output records as their repr."""

    def decode_subscription_batch(self, msgs: Any) -> list[Any]:
        return [m.value() for m in msgs]

    def decode_partner_batch(self, msgs: Any) -> list[Any]:
        return [m.event for m in msgs]

    def encode_decision(self, rec: Any, /) -> bytes:
        return repr(rec).encode()

    def encode_status(self, rec: Any, /) -> bytes:
        return repr(rec).encode()


def changed(eid: str, pid: str, program: Program, day: int) -> PartnerProgramChanged:
    return PartnerProgramChanged(eid, datetime(2026, 1, day, tzinfo=UTC), pid, program, ())


def processor(owned: set[int]) -> BatchProcessor:
    store = AccountStore(Classifier(), input_partitions=4, decode_legacy=lambda values: [])
    store.owned |= owned
    return BatchProcessor(
        store, FakeCodec(), subscription_topic="subs", partner_topic="partners", dead_letter_limit=1 << 20
    )


def run(proc: BatchProcessor, records: list[FakeRecord]) -> BatchOutput:
    proc.store.begin()
    out = proc.process([], records, NOW, BatchTally())  # type: ignore[arg-type]
    proc.store.commit()
    return out


def table(out: BatchOutput) -> dict[str, PartnerEntry]:
    return dict(decode_partner_entry(r["value"]) for r in out.partner_table)


def test_the_owner_writes_the_latest_event_even_when_it_arrives_first() -> None:
    """Newer event first, older after: the table topic gets the newer one (the partner topic keeps the older)."""
    proc = processor(owned={1})  # partner partition 1 is checkpointed by input partition 1 % 4
    newer, older = changed("pe-2", "P1", Program.CSP_DIRECT, 20), changed("pe-1", "P1", Program.NONE, 1)
    run(proc, [FakeRecord(newer, 1, 0)])
    out = run(proc, [FakeRecord(older, 1, 1)])
    [(pid, entry)] = table(out).items()
    assert (pid, entry.event_id, entry.program) == ("P1", "pe-2", Program.CSP_DIRECT)
    assert entry.recent_event_ids == ("pe-2", "pe-1"), "the dedup window goes with the entry"
    assert (1, b"__partner-table__:1", b"1") in out.changelog, "the checkpoint moves with the entries"


def test_an_instance_that_does_not_own_the_checkpoint_writes_nothing() -> None:
    """Every instance reads every partner record; only the checkpoint's owner writes the table."""
    proc = processor(owned={0, 2, 3})
    out = run(proc, [FakeRecord(changed("pe-1", "P1", Program.CSP_DIRECT, 1), 1, 0)])
    assert out.partner_table == [] and out.changelog == []


def test_a_new_owner_writes_the_partners_past_the_checkpoint_it_restored() -> None:
    """Records read before the partition was owned are written once it is, from the restored checkpoint on."""
    proc = processor(owned=set())
    records = [
        FakeRecord(changed("pe-1", "P1", Program.CSP_DIRECT, 1), 1, 0),
        FakeRecord(changed("pe-2", "P2", Program.ADVISOR, 2), 1, 1),
        FakeRecord(changed("pe-3", "P3", Program.NONE, 3), 1, 2),
    ]
    run(proc, records)
    proc.store.owned.add(1)
    proc.store.table_checkpoints[1] = 0  # the previous owner wrote the record at offset 0
    assert proc.work_pending(), "a batch is due even without new input"
    out = run(proc, [])
    assert sorted(table(out)) == ["P2", "P3"]
    assert not proc.work_pending()


def test_an_aborted_batch_is_written_again_when_its_records_are_read_again() -> None:
    """A rollback takes back the read positions: the re-read records are not skipped as already written."""
    proc = processor(owned={1})
    record = FakeRecord(changed("pe-1", "P1", Program.CSP_DIRECT, 1), 1, 0)
    proc.store.begin()
    proc.process([], [record], NOW, BatchTally())  # type: ignore[list-item]
    proc.store.rollback()
    assert proc.store.partner_positions == {} and proc.store.table_checkpoints == {}
    out = run(proc, [record])
    assert list(table(out)) == ["P1"]


def test_a_restored_entry_wins_over_an_older_record_of_the_partner_topic() -> None:
    """At a start the saved entries go in first; the partner topic's surviving older record changes nothing."""
    saved = PartnerTable()
    saved.apply(changed("pe-2", "P1", Program.CSP_DIRECT, 20))
    value = encode_partner_entry("P1", saved.entries["P1"])
    restored = PartnerTable()
    restored.restore([decode_partner_entry(value)])
    duplicate, moved = restored.apply(changed("pe-1", "P1", Program.NONE, 1))
    assert (duplicate, moved) == (False, False)
    assert restored.entries["P1"] == saved.entries["P1"]._replace(recent_event_ids=("pe-2", "pe-1"))


def test_a_bad_partner_record_is_dead_lettered_once_across_an_aborted_batch() -> None:
    """A bad record read in an earlier batch is still dead-lettered after an aborted batch took it (the feed's
    rewind does not read it again), and a record the aborted batch read itself is written once when re-read."""
    proc = processor(owned=set())
    earlier = FakeRecord(UnknownEventType("subscription_teleported is not an event"), 1, 0)
    run(proc, [earlier])  # read while another instance owns the checkpoint: kept
    proc.store.owned.add(1)
    later = FakeRecord(UnknownEventType("subscription_beamed is not an event"), 1, 1)
    proc.store.begin()
    aborted = proc.process([], [later], NOW, BatchTally())  # type: ignore[list-item]
    assert len(aborted.dead_letters) == 2
    proc.store.rollback()
    assert proc.work_pending(), "the dead letters are still due after the abort"
    out = run(proc, [later])  # the rewound feed reads the aborted batch's record again
    assert len(out.dead_letters) == 2
    assert (1, b"__partner-checkpoint__:1", b"1") in out.changelog
    assert run(proc, []).dead_letters == [], "written once"
