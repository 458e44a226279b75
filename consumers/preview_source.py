"""The reading side of `multichannel rules preview`: what a running deployment has committed, or an export of
its events, as the accounts and the partner table that `multichannel.preview` compares.

    the partner table topic, then the partner topic  -> PartnerTable      (as a starting instance builds it)
    the changelog, one partition at a time           -> its accounts -> both books -> changed subscriptions
    (or) an export of the events, through `classify` -> its accounts -> both books -> changed subscriptions

The live reader never joins the deployment's consumer group and never commits: its consumers are assigned
their partitions, read them `read_committed` from the beginning to the high watermarks seen when they start,
and close. A partition's accounts are decoded one at a time and dropped once compared, so that memory holds
one partition's changelog values (per worker), not the deployment's accounts. Partitions are compared in
worker processes when there are cores for them; each writes its changed subscriptions to a part file, and the
parts are joined in partition order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from config.errors import CommandError
from config.logs import configure_logging
from config.registry import registry_client
from config.settings import Settings
from consumers.changelog import RestoredPartition, read_changelog, split_restored
from consumers.classify_runner import ClassifyCounts, classify_stream
from consumers.codec import decode_input, decode_states
from consumers.partner_feed import PartnerFeed, read_partner_table
from consumers.preview_output import ChangeWriter, OutputForm, join_parts
from consumers.runtime import tune_gc
from consumers.serde import Decoder, event_decoder
from consumers.state_format import StateFormatError, read_entities, read_headers, thaw
from multichannel.engine import VIEW_VERSION, Classifier, Held
from multichannel.model import PartnerProgramChanged
from multichannel.partners import PartnerTable
from multichannel.preview import PreviewSummary, book_label, compare_account
from multichannel.rulebooks import RuleBook, rulebook
from multichannel.state import Account, AccountState
from schemas import ACCOUNT_STATE

Progress = Callable[[int], None]
"""Told how much more was done: changelog records read (live) or export lines read."""


class StateUnreadable(CommandError):
    """The deployment's committed state cannot be read for a preview (a topic missing, a format unknown)."""

    reason = "STATE_UNREADABLE"
    exit_code = 1


@dataclass(frozen=True)
class Books:
    """What a preview compares: both books at one clock."""

    before: RuleBook
    after: RuleBook
    clock: datetime

    def summary(self) -> PreviewSummary:
        return PreviewSummary(book_label(self.before), book_label(self.after), self.clock)


# ---------------------------------------------------------------------------------------------- the partners
def preview_group(settings: Settings) -> str:
    """The group id of the preview's consumers: they are assigned their partitions and never commit, so the
    group holds no member and no offset (a fixed name, so that an ACL can name it: DESCRIBE)."""
    return f"{settings.application_id}-preview"


def load_partners(settings: Settings) -> PartnerTable:
    """The partner table a starting instance builds: the service's own table topic, then every committed
    record of the partner topic merged over it (the winner by (occurred_at, event_id) either way)."""
    conf = settings.kafka_client_config()
    group = preview_group(settings)
    table = PartnerTable(settings.dedup_window)
    try:
        table.restore(read_partner_table(conf, settings.partner_table_topic, group))
        feed = PartnerFeed(conf, settings.partner_topic, group)
        try:
            feed.start()
            msgs = feed.catch_up()
        finally:
            feed.close()
    except KafkaException as exc:
        raise StateUnreadable(f"partner table: {exc.args[0] if exc.args else exc}") from None
    decoded = event_decoder(registry_client(settings), "partner").decode_batch(msgs)
    for event in decode_input(decoded, msgs, "partner"):
        if isinstance(event, PartnerProgramChanged):  # a bad record changes nothing, as in the service
            table.apply(event)
    table.commit()
    return table


# ---------------------------------------------------------------------------------------------- the changelog
def changelog_records(settings: Settings) -> dict[int, int]:
    """Changelog partition -> records it holds up to its high watermark now (what a preview reads)."""
    topic = settings.changelog_topic
    conf = {**settings.kafka_client_config(), "group.id": preview_group(settings), "enable.auto.commit": False}
    consumer = Consumer(conf)
    try:
        md = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if md is None or md.error is not None or not md.partitions:
            raise StateUnreadable(f"changelog topic {topic} missing: is MULTICHANNEL_APPLICATION_ID the deployment's?")
        out = {}
        for p in sorted(md.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out[p] = max(0, high - low)
        return out
    finally:
        consumer.close()


def _saved_version(held: Held) -> str:
    """The rule book version an account's partner view was saved with ("" when none is)."""
    view = held[4]
    if type(view) is dict:
        return str(view.get(VIEW_VERSION, ""))
    return view.split("|", 1)[0] if isinstance(view, str) else ""


def partition_accounts(
    part: RestoredPartition, window: int, avro_states: Callable[[list[bytes]], list[AccountState]]
) -> tuple[Iterator[Account], Counter[str]]:
    """A restored partition's accounts, in (partner, customer) order, each decoded when it is reached; and how
    many accounts each rule book version saved. Every format the service restores is read. The partition's
    values are let go once each account's are gathered (`part.values` is emptied): memory then holds one copy."""
    try:
        values = split_restored(part)
        held, _latest = read_entities(values.accounts, values.entities)
        whole, _latest = read_headers(values.whole)
    except StateFormatError as exc:
        raise StateUnreadable(f"changelog partition {part.partition}: {exc}") from None
    part.values.clear()
    versions = Counter(_saved_version(h) for h in (*held, *whole))
    payloads = sorted(((h[0], h[1]), h[5]) for h in (*held, *whole))
    legacy = values.avro

    def accounts() -> Iterator[Account]:
        for _key, payload in payloads:
            state = thaw(payload, window)
            yield state if isinstance(state, Account) else Account.restore(state)
        if legacy:
            for st in sorted(avro_states(legacy), key=lambda s: s.key):
                yield Account.restore(st)

    if legacy:
        versions[""] += len(legacy)
    del values, held, whole  # the generator keeps the payloads alone
    return accounts(), versions


@dataclass
class PartResult:
    """What one changelog partition gave."""

    partition: int
    summary: PreviewSummary
    records: int


def compare_partition(
    settings: Settings, partition: int, partners: PartnerTable, books: Books, sink: ChangeWriter | None
) -> PartResult:
    """Read one changelog partition and compare its accounts; their changed subscriptions go to `sink`."""
    part = read_changelog(
        settings.kafka_client_config(),
        settings.changelog_topic,
        [partition],
        preview_group(settings),
    )[0]
    decoder = Decoder(registry_client(settings), ACCOUNT_STATE)
    accounts, versions = partition_accounts(part, settings.dedup_window, lambda vs: decode_states(decoder, vs))
    summary = compare_accounts(accounts, partners, books, sink)
    summary.saved_by.update(versions)
    return PartResult(partition, summary, part.records_read)


def compare_accounts(
    accounts: Iterable[Account], partners: PartnerTable, books: Books, sink: ChangeWriter | None
) -> PreviewSummary:
    """Both books over `accounts`: the summary, and every changed subscription written to `sink`."""
    summary = books.summary()
    before, after, clock = books.before, books.after, books.clock
    for acct in accounts:
        comparison = compare_account(acct, partners, before, after, clock)
        if comparison is None:
            continue
        summary.add(comparison)
        if sink is not None:
            for change in comparison.changes:
                sink.write(change)
    return summary


# ---------------------------------------------------------------------------------------------- workers
@dataclass
class _Worker:
    settings: Settings
    partners: PartnerTable
    books: Books


_worker: _Worker | None = None


def _start_worker(settings: Settings, partners: PartnerTable, before: str, after: str, clock: datetime) -> None:
    """A worker process's state, set once: its logs on stderr as the command's, the table and the books."""
    global _worker  # noqa: PLW0603 - one per worker process, set by the pool's initializer
    configure_logging(settings.log_level)
    tune_gc()
    _worker = _Worker(settings, partners, Books(rulebook(before), rulebook(after), clock))


def _worker_partition(partition: int, part_file: str | None, form: OutputForm) -> PartResult:
    assert _worker is not None
    w = _worker
    if part_file is None:
        return compare_partition(w.settings, partition, w.partners, w.books, None)
    with Path(part_file).open("wb") as f:
        sink = ChangeWriter(f, form, header=False)
        result = compare_partition(w.settings, partition, w.partners, w.books, sink)
        sink.flush()
    return result


@dataclass
class LivePreview:
    """A preview of a running deployment: the figures, and what the changelog held."""

    summary: PreviewSummary
    records: int
    """Changelog records read."""


def preview_live(
    settings: Settings,
    partners: PartnerTable,
    books: Books,
    partitions: list[int],
    *,
    output: Path | None,
    form: OutputForm,
    workers: int,
    progress: Progress = lambda _n: None,
) -> LivePreview:
    """Every changelog partition compared (in `workers` processes when more than one), the changed subscriptions
    written to `output` in partition order."""
    parts_dir = Path(tempfile.mkdtemp(prefix=".preview-", dir=output.parent)) if output is not None else None
    results: list[PartResult] = []
    try:

        def part_file(p: int) -> str | None:
            return None if parts_dir is None else str(parts_dir / f"{p:06d}")

        if workers <= 1:
            _start_worker(settings, partners, books.before.name, books.after.name, books.clock)
            for p in partitions:
                results.append(_worker_partition(p, part_file(p), form))
                progress(results[-1].records)
        else:
            with ProcessPoolExecutor(
                max_workers=workers,
                mp_context=get_context("spawn"),  # no fork of a process that has run librdkafka's threads
                initializer=_start_worker,
                initargs=(settings, partners, books.before.name, books.after.name, books.clock),
            ) as pool:
                futures = [pool.submit(_worker_partition, p, part_file(p), form) for p in partitions]
                for future in as_completed(futures):
                    results.append(future.result())
                    progress(results[-1].records)
        summary = books.summary()
        for result in sorted(results, key=lambda r: r.partition):
            summary.merge(result.summary)
        if output is not None and parts_dir is not None:
            join_parts(output, form, [parts_dir / f"{p:06d}" for p in partitions], summary)
        return LivePreview(summary, sum(r.records for r in results))
    finally:
        if parts_dir is not None:
            shutil.rmtree(parts_dir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- an export
def _counted(lines: Iterable[bytes], progress: Progress, every: int = 10_000) -> Iterator[bytes]:
    n = 0
    for line in lines:
        yield line
        n += 1
        if n == every:
            progress(n)
            n = 0
    progress(n)


def preview_export(
    events: Path,
    settings: Settings,
    books: Books,
    *,
    output: Path | None,
    form: OutputForm,
    progress: Progress = lambda _n: None,
) -> tuple[PreviewSummary, ClassifyCounts]:
    """The events run through `classify` under the `before` book with the clock moved to the preview's at the
    end (each account's state, the partner table, the `before` verdicts current at the clock), then compared
    account by account in (partner, customer) order."""
    engine = Classifier(transactional=False, dedup_window=settings.dedup_window, rulebook=books.before)
    with events.open("rb") as source, Path(os.devnull).open("wb") as discard:
        counts = classify_stream(_counted(source, progress), discard, as_of=books.clock, engine=engine)
    accounts = (Account.restore(state) for key in sorted(engine) if (state := engine.get(key)) is not None)
    if output is None:
        return compare_accounts(accounts, engine.partners, books, None), counts
    part = output.with_name(f".{output.name}.part")
    try:
        with part.open("wb") as f:
            sink = ChangeWriter(f, form, header=False)
            summary = compare_accounts(accounts, engine.partners, books, sink)
            sink.flush()
        join_parts(output, form, [part], summary)
    finally:
        part.unlink(missing_ok=True)
    return summary, counts
