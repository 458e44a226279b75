"""`multichannel dead-letters` on the real broker and registry: `list` and `show` filter by reason, source
topic, time and offsets and count by reason; `replay` re-drives to the source topic so that the service
applies the record, exactly once even when the replay is SIGKILLed inside a transaction and run again, with
an audit entry per re-driven dead letter; a dry run writes nothing; an edit is validated as `produce`
validates, and a bad one is refused with nothing written."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from config.registry import registry_client
from config.settings import Settings
from consumers.dead_letters import fit
from consumers.serde import Decoder
from multichannel.parse import event_to_dict, parse_event
from producers.generator import BadRecord
from producers.serde import EventEncoder
from schemas import SUBSCRIPTION_DECISION
from tests.integration.pipeline import (
    PROJECT_ROOT,
    ServiceProcess,
    publish,
    read_outputs,
    read_topic,
    settings_env,
    wait_until_processed,
)

SettingsFactory = Callable[..., Settings]
CLI = str(PROJECT_ROOT / ".venv" / "bin" / "multichannel")
MINUTE = 60_000
T0 = (int(time.time() * 1000) // (60 * MINUTE) - 1) * 60 * MINUTE
"""The start of the last hour (within the topics' retention), in epoch milliseconds: the dead letters' own
timestamps are T0 + i minutes."""


def at(minute: int) -> str:
    """T0 + `minute` as the commands take a time."""
    when = datetime.fromtimestamp((T0 + minute * MINUTE) / 1000, UTC)
    return when.isoformat().replace("+00:00", "Z")


def purchase(customer: str, quantity: int = 5, partner: str = "P1") -> dict[str, Any]:
    return {
        "event_type": "subscription_purchased",
        "event_id": f"buy-{customer}",
        "occurred_at": "2026-03-01T09:30:00Z",
        "partner_id": partner,
        "customer_id": customer,
        "subscription_id": f"S-{customer}",
        "offer_id": "O1",
        "billing_model": "license",
        "channel": "microsoft_direct",
        "quantity": quantity,
        "term_start": "2026-01-01",
        "term_end": "2034-01-01",
    }


PARTNER = {
    "event_type": "partner_program_changed",
    "event_id": "p1",
    "occurred_at": "2026-01-01T00:00:00Z",
    "partner_id": "P1",
    "program": "csp_direct",
    "indirect_provider_ids": [],
}


@dataclass(frozen=True)
class Letter:
    """A dead letter to write as the service writes it (`consumers.dead_letters.fit`)."""

    key: bytes
    value: bytes
    reason: str
    source_topic: str
    minute: int
    partition: int = 0
    source_offset: int = 0
    own_headers: tuple[tuple[str, bytes], ...] = ()


def encoded(settings: Settings, event: dict[str, Any]) -> bytes:
    encoder = EventEncoder.for_settings(settings, registry_client(settings), auto_register=True)
    return encoder.encode_subscription_event(event_to_dict(parse_event(event)))


def write_dead_letters(settings: Settings, letters: list[Letter]) -> None:
    producer = Producer({**settings.kafka_client_config(), "enable.idempotence": True})
    for n, letter in enumerate(letters):
        why: list[tuple[str, str | bytes | None]] = [
            ("error.reason", letter.reason.encode()),
            ("error.message", f"{letter.reason.lower()} number {n}".encode()),
            ("source.topic", letter.source_topic.encode()),
            ("source.partition", b"0"),
            ("source.offset", str(letter.source_offset or n).encode()),
            ("source.timestamp", str(T0).encode()),
        ]
        key, value, headers = fit(letter.key, letter.value, list(letter.own_headers), why, 1_000_000)
        producer.produce(
            settings.dead_letter_topic,
            key=key,
            value=value,
            headers=headers,
            partition=letter.partition,
            timestamp=T0 + letter.minute * MINUTE,
        )
    assert producer.flush(30) == 0


def cli(settings: Settings, *args: str, editor: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in settings_env(settings).items() if k not in ("EDITOR", "VISUAL")} | {"COLUMNS": "250"}
    if editor:
        env["EDITOR"] = editor
    argv = [CLI, "dead-letters", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180, check=False, cwd=PROJECT_ROOT)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


def count_uncommitted(settings: Settings, topic: str) -> int:
    """Records of `topic` in the log, those of open or aborted transactions included (read_uncommitted)."""
    c = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"uncommitted-{time.monotonic_ns()}",
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        parts = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        pending, seen = set(parts), 0
        while pending:
            for m in c.consume(1000, timeout=5):
                err = m.error()
                if err is None:
                    seen += 1
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(m.partition())
        return seen
    finally:
        c.close()


def audit(settings: Settings) -> list[dict[str, Any]]:
    return [orjson.loads(m.value()) for m in read_topic(settings, settings.redrive_audit_topic_name)]


def group_offsets(settings: Settings) -> dict[int, int]:
    c = Consumer({**settings.kafka_client_config(), "group.id": settings.redrive_group_id})
    try:
        parts = [TopicPartition(settings.dead_letter_topic, p) for p in range(settings.output_partitions)]
        return {tp.partition: tp.offset for tp in c.committed(parts, timeout=10) if tp.offset >= 0}
    finally:
        c.close()


def wait_for_decisions(settings: Settings, customers: set[str], svc: ServiceProcess, deadline_s: float = 90) -> None:
    """Block on the decision topic (read_committed) until each of `customers` has a decision. (The input's
    offsets cannot say it: a re-drive's transaction markers lie past the service's committed offsets.)"""
    decoder = Decoder(registry_client(settings), SUBSCRIPTION_DECISION)
    c = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"decisions-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([settings.decision_topic])
    seen: set[str] = set()
    deadline = time.monotonic() + deadline_s
    try:
        while not customers <= seen:
            assert time.monotonic() < deadline, f"decided only {seen}:\n{svc.log_tail()}"
            assert svc.alive(), svc.log_tail()
            for m in c.consume(100, timeout=1.0):
                if m.error() is None:
                    seen.add(decoder.decode(m.value())["customer_id"])
    finally:
        c.close()


def test_list_and_show_filter_by_reason_source_time_and_offsets_with_counts(
    settings_factory: SettingsFactory,
) -> None:
    """Six dead letters on partition 0 (minutes 0-5): `list --json` gives all six and the counts by reason;
    each filter (reason, source topic, since/until, offset range) and their combination keeps exactly the
    matching ones; the table shows the counts; `show` decodes a valid value to its event and says why an
    undecodable one is not; a malformed offset range is a usage error (exit 2)."""
    s = settings_factory()
    good = encoded(s, purchase("C-1"))
    letters = [
        Letter(b"C-1", good, "SCHEMA_MISMATCH", s.subscription_topic, 0, own_headers=(("trace", b"t-1"),)),
        Letter(b"C-2", b"not avro", "SCHEMA_MISMATCH", s.subscription_topic, 1),
        Letter(b"C-3", good, "INVALID_FIELD", s.subscription_topic, 2),
        Letter(b"P-9", b"\x00\x00\x00\x00\x01", "UNKNOWN_EVENT_TYPE", s.partner_topic, 3),
        Letter(b"C-5", good, "SCHEMA_MISMATCH", s.subscription_topic, 4),
        Letter(b"C-6", good, "INVALID_FIELD", s.subscription_topic, 5),
    ]
    write_dead_letters(s, letters)

    def listed(*args: str) -> tuple[list[str], dict[str, Any]]:
        done = cli(s, "list", "--json", *args)
        assert done.returncode == 0, done.stderr
        lines = json_lines(done.stdout)
        return [line["dead_letter"] for line in lines[:-1]], lines[-1]

    every, counts = listed()
    assert every == [f"0:{i}" for i in range(6)]
    assert counts == {"counts": {"SCHEMA_MISMATCH": 3, "INVALID_FIELD": 2, "UNKNOWN_EVENT_TYPE": 1}, "total": 6}
    assert listed("--reason", "INVALID_FIELD") == (["0:2", "0:5"], {"counts": {"INVALID_FIELD": 2}, "total": 2})
    assert listed("--reason", "INVALID_FIELD", "--reason", "UNKNOWN_EVENT_TYPE")[0] == ["0:2", "0:3", "0:5"]
    assert listed("--source-topic", s.partner_topic)[0] == ["0:3"]
    assert listed("--since", at(1), "--until", at(4))[0] == ["0:1", "0:2", "0:3"]
    assert listed("--offsets", "0:3-")[0] == ["0:3", "0:4", "0:5"]
    assert listed("--offsets", "0:1-2", "--offsets", "0:5")[0] == ["0:1", "0:2", "0:5"]
    assert listed("--offsets", "1:0-")[0] == [], "nothing on partition 1"
    combined = listed("--reason", "SCHEMA_MISMATCH", "--since", at(1), "--offsets", "0:0-3")
    assert combined == (["0:1"], {"counts": {"SCHEMA_MISMATCH": 1}, "total": 1})

    table = cli(s, "list", "--reason", "SCHEMA_MISMATCH")
    assert table.returncode == 0, table.stderr
    assert "counts by reason" in table.stdout and "0:4" in table.stdout and "0:2" not in table.stdout

    shown = cli(s, "show", "0:0", "0:1", "--json")
    assert shown.returncode == 0, shown.stderr
    first, second = json_lines(shown.stdout)
    assert first["dead_letter"] == "0:0" and first["fails"] is None
    assert first["event"]["customer_id"] == "C-1" and first["event"]["quantity"] == 5
    assert first["event"]["occurred_at"] == "2026-03-01T09:30:00Z" and first["event"]["term_end"] == "2034-01-01"
    assert second["event"] is None and second["fails"].startswith("SCHEMA_MISMATCH: ")
    plain = cli(s, "show", "0:0")
    assert plain.returncode == 0, plain.stderr
    assert "header   trace=t-1" in plain.stdout and "S-C-1" in plain.stdout

    bad = cli(s, "list", "--offsets", "zero")
    assert bad.returncode == 2 and "PARTITION:OFFSET" in bad.stderr


def test_replayed_and_edited_dead_letters_are_applied_by_the_service(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """The service dead-letters a purchase of quantity 0 (INVALID_FIELD); a valid purchase sits in the
    dead-letter topic as SCHEMA_MISMATCH (its cause since fixed). `replay --reason SCHEMA_MISMATCH`
    re-drives the valid one unchanged, with its own headers; `show --json` of the invalid one, edited to
    quantity 3 and replayed with `--edit --from-file`, is applied too: the service decides both, once, no
    new dead letter appears, and the audit names each dead letter once (one of them edited)."""
    s = settings_factory()
    bad_purchase = purchase("C-bad", quantity=0)
    publish(s, [PARTNER, BadRecord("INVALID_FIELD", bad_purchase)])
    write_dead_letters(
        s,
        [
            Letter(
                b"C-fixed",
                encoded(s, purchase("C-fixed")),
                "SCHEMA_MISMATCH",
                s.subscription_topic,
                0,
                partition=1,
                own_headers=(("trace", b"t-7"),),
            )
        ],
    )
    svc = ServiceProcess(s, tmp_path / "service.log").start()
    try:
        svc.wait_ready()
        wait_until_processed(s, 90, [svc])
        dead = read_topic(s, s.dead_letter_topic)
        assert Counter(dict(m.headers())["error.reason"] for m in dead) == {b"INVALID_FIELD": 1, b"SCHEMA_MISMATCH": 1}

        replayed = cli(s, "replay", "--reason", "SCHEMA_MISMATCH")
        assert replayed.returncode == 0, replayed.stderr
        assert "re-driven 1 (0 edited)" in replayed.stderr

        shown = cli(s, "show", "--reason", "INVALID_FIELD", "--json")
        assert shown.returncode == 0, shown.stderr
        (line,) = json_lines(shown.stdout)
        assert line["fails"].startswith("INVALID_FIELD: ") and line["event"]["quantity"] == 0
        line["event"]["quantity"] = 3
        edited = tmp_path / "edited.jsonl"
        edited.write_bytes(orjson.dumps(line) + b"\n")
        fixed = cli(s, "replay", "--edit", "--from-file", str(edited))
        assert fixed.returncode == 0, fixed.stderr
        assert "re-driven 1 (1 edited)" in fixed.stderr
        wait_for_decisions(s, {"C-fixed", "C-bad"}, svc)
        assert svc.terminate() == 0, svc.log_tail()
    finally:
        if svc.alive():
            svc.kill()

    decisions, _statuses, dead = read_outputs(s)
    decided = Counter(d["customer_id"] for d in decisions)
    assert decided == {"C-fixed": 1, "C-bad": 1}, decided
    assert len(dead) == 2, "the re-driven records were applied, not dead-lettered again"
    redriven = [m for m in read_topic(s, s.subscription_topic) if m.key() in (b"C-fixed",)]
    assert [dict(m.headers() or []) for m in redriven] == [{"trace": b"t-7"}], "own headers, not error.* ones"
    entries = audit(s)
    assert sorted((e["reason"], e["edited"], e["redriven_to"]) for e in entries) == [
        ("INVALID_FIELD", True, s.subscription_topic),
        ("SCHEMA_MISMATCH", False, s.subscription_topic),
    ]
    assert len({(e["dead_letter"]["partition"], e["dead_letter"]["offset"]) for e in entries}) == 2


def test_a_replay_killed_inside_a_transaction_re_drives_each_record_once_when_run_again(
    settings_factory: SettingsFactory,
) -> None:
    """30 dead letters over 3 partitions, 4 per transaction: a replay that SIGKILLs itself inside its third
    transaction (records flushed, not committed) leaves 8 committed re-drives and 4 uncommitted records in
    the source topic's log; run again, it fences the dead one (its transaction aborted) and re-drives the
    other 22: each source record is committed exactly once, the audit has one entry per dead letter, the
    group's offsets are at the end of every partition, and a third run re-drives nothing."""
    s = settings_factory()
    letters = [
        Letter(f"C-{i}".encode(), encoded(s, purchase(f"C-{i}")), "SCHEMA_MISMATCH", s.subscription_topic, i, i % 3)
        for i in range(30)
    ]
    write_dead_letters(s, letters)

    killed = cli(s, "replay", "--batch", "4", "--halt-in-transaction", "3")
    assert killed.returncode == -9, (killed.returncode, killed.stderr)
    assert len(read_topic(s, s.subscription_topic)) == 8
    assert len(audit(s)) == 8
    assert count_uncommitted(s, s.subscription_topic) == 12, "the killed transaction's records are in the log"

    again = cli(s, "replay", "--batch", "4")
    assert again.returncode == 0, again.stderr
    assert "re-driven 22 (0 edited)" in again.stderr
    assert "already re-driven 0" in again.stderr, "the committed 8 lie below the group's offsets: not read again"
    committed = read_topic(s, s.subscription_topic)
    assert Counter(m.key() for m in committed) == Counter(letter.key for letter in letters)
    assert {m.key(): m.value() for m in committed} == {letter.key: letter.value for letter in letters}
    entries = audit(s)
    coordinates = Counter((e["dead_letter"]["partition"], e["dead_letter"]["offset"]) for e in entries)
    assert len(coordinates) == 30 and set(coordinates.values()) == {1}
    assert {e["key"] for e in entries} == {f"C-{i}" for i in range(30)}
    assert group_offsets(s) == {0: 10, 1: 10, 2: 10}

    third = cli(s, "replay")
    assert third.returncode == 0, third.stderr
    assert "re-driven 0 (0 edited)" in third.stderr
    assert len(read_topic(s, s.subscription_topic)) == 30


def test_passed_over_dead_letters_hold_the_group_offset_for_a_later_selection(
    settings_factory: SettingsFactory,
) -> None:
    """Dead letters of two reasons interleaved on one partition: a replay of one reason re-drives its three
    and commits the group's offset only past the first (the next is passed over); a later replay of the
    other reason still finds its three and re-drives them, and then the offset is at the end."""
    s = settings_factory()
    letters = [
        Letter(f"C-{i}".encode(), encoded(s, purchase(f"C-{i}")), reason, s.subscription_topic, i)
        for i, reason in enumerate(["A_CAUSE", "B_CAUSE", "A_CAUSE", "B_CAUSE", "A_CAUSE", "B_CAUSE"])
    ]
    write_dead_letters(s, letters)
    first = cli(s, "replay", "--reason", "A_CAUSE")
    assert first.returncode == 0, first.stderr
    assert "re-driven 3" in first.stderr and "not selected 3" in first.stderr
    assert group_offsets(s) == {0: 1}
    second = cli(s, "replay", "--reason", "B_CAUSE")
    assert second.returncode == 0, second.stderr
    assert "re-driven 3" in second.stderr and "already re-driven 2" in second.stderr, "offsets 2 and 4, by the audit"
    assert group_offsets(s) == {0: 6}
    assert sorted(m.key() for m in read_topic(s, s.subscription_topic)) == sorted(x.key for x in letters)


def test_a_dry_run_writes_nothing(settings_factory: SettingsFactory, tmp_path: Path) -> None:
    """`replay --dry-run` lists what it would re-drive and says how many; `--dry-run --edit` validates the
    edited lines, from --from-file or from $EDITOR; none writes a record, an audit entry or a group offset."""
    s = settings_factory()
    write_dead_letters(
        s,
        [
            Letter(f"C-{i}".encode(), encoded(s, purchase(f"C-{i}")), "SCHEMA_MISMATCH", s.subscription_topic, i)
            for i in range(3)
        ],
    )
    dry = cli(s, "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would re-drive 3 (0 edited)" in dry.stderr
    assert all(f"0:{i}" in dry.stdout for i in range(3))
    shown = cli(s, "show", "0:1", "--json")
    edited = tmp_path / "edited.jsonl"
    edited.write_text(shown.stdout)
    dry_edit = cli(s, "replay", "--dry-run", "--edit", "--from-file", str(edited))
    assert dry_edit.returncode == 0, dry_edit.stderr
    assert "would re-drive 1 (1 edited)" in dry_edit.stderr and "left out of the edit 2" in dry_edit.stderr
    in_editor = cli(s, "replay", "--dry-run", "--edit", editor="sed -i 2,$d")  # the editor keeps the first line
    assert in_editor.returncode == 0, in_editor.stderr
    assert "would re-drive 1 (1 edited)" in in_editor.stderr and "left out of the edit 2" in in_editor.stderr
    assert read_topic(s, s.subscription_topic) == []
    assert read_topic(s, s.redrive_audit_topic_name) == []
    assert group_offsets(s) == {}


def test_a_bad_edit_is_refused_with_its_reason_and_nothing_is_re_driven(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    """An edited file with one good line, one whose event is invalid (quantity 0), one that is not JSON and one
    naming a dead letter outside the selection: exit 1, one plain line per bad line with the reason `produce`
    gives (INVALID_FIELD, SCHEMA_MISMATCH), and no record, audit entry or offset written. Without $EDITOR
    and --from-file, --edit is a usage error (exit 2)."""
    s = settings_factory()
    write_dead_letters(
        s,
        [
            Letter(f"C-{i}".encode(), encoded(s, purchase(f"C-{i}")), "INVALID_FIELD", s.subscription_topic, i)
            for i in range(2)
        ],
    )
    shown = cli(s, "show", "--json")
    good, second = json_lines(shown.stdout)
    second["event"]["quantity"] = 0
    stranger = dict(good, dead_letter="0:99")
    edited = tmp_path / "edited.jsonl"
    edited.write_bytes(b"\n".join([orjson.dumps(good), orjson.dumps(second), b"{not json", orjson.dumps(stranger)]))
    refused = cli(s, "replay", "--edit", "--from-file", str(edited))
    assert refused.returncode == 1, refused.stderr
    assert "line 2 (dead letter 0:1): INVALID_FIELD: " in refused.stderr
    assert "line 3: SCHEMA_MISMATCH: not JSON" in refused.stderr
    assert "line 4 (dead letter 0:99): names no dead letter" in refused.stderr
    assert "3 edited lines refused: nothing re-driven" in refused.stderr
    assert read_topic(s, s.subscription_topic) == []
    assert read_topic(s, s.redrive_audit_topic_name) == []
    assert group_offsets(s) == {}

    no_editor = cli(s, "replay", "--edit")
    assert no_editor.returncode == 2 and "$EDITOR" in no_editor.stderr
