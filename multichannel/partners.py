"""The partner table: the latest program (and a reseller's providers) of every partner.

A partner absent from the table has program `none` [choice]. The latest event by
(occurred_at, event_id) wins, whatever the arrival order. An undo log lets the Kafka service
roll an aborted batch back.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

from multichannel.model import CSP_PROGRAMS, OrderKey, PartnerProgramChanged, Program


class PartnerEntry(NamedTuple):
    program: Program
    indirect_provider_ids: tuple[str, ...]
    order: OrderKey
    event_id: str
    recent_event_ids: tuple[str, ...]
    in_csp: bool
    """Precomputed: enum members hash through a Python-level __hash__, too slow per lookup."""
    azure_expert_msp: bool = False
    """Contract 1.1: the partner is a direct-bill partner certified as Azure Expert MSP."""


ABSENT = PartnerEntry(Program.NONE, (), (datetime.min.replace(tzinfo=UTC), ""), "", (), False)
"""What a partner absent from the table reads as: program `none` [choice]."""


class PartnerTable:
    """Program lookups for the rules, and the merge of partner-change events."""

    __slots__ = ("_dedup_window", "_undo", "entries")

    def __init__(self, dedup_window: int = 256) -> None:
        self.entries: dict[str, PartnerEntry] = {}
        """partner id -> entry; read it directly on hot paths, change it only through `apply`."""
        self._undo: dict[str, PartnerEntry | None] = {}
        self._dedup_window = dedup_window

    def __len__(self) -> int:
        return len(self.entries)

    def program(self, partner_id: str | None) -> Program:
        return ABSENT.program if partner_id is None else self.entries.get(partner_id, ABSENT).program

    def in_csp(self, partner_id: str | None) -> bool:
        return partner_id is not None and self.entries.get(partner_id, ABSENT).in_csp

    def entry(self, partner_id: str) -> PartnerEntry | None:
        return self.entries.get(partner_id)

    def apply(self, event: PartnerProgramChanged) -> tuple[bool, bool]:
        """Merge one event; returns (duplicate, changed): changed when the program, providers or Azure Expert MSP
        certification moved."""
        pid = event.partner_id
        old = self.entries.get(pid)
        if old is not None and event.event_id in old.recent_event_ids:
            return True, False
        recent = ((old.recent_event_ids if old else ()) + (event.event_id,))[-self._dedup_window :]
        order = (event.occurred_at, event.event_id)
        if old is None or order > old.order:
            new = PartnerEntry(
                event.program,
                event.indirect_provider_ids,
                order,
                event.event_id,
                recent,
                event.program in CSP_PROGRAMS,
                event.azure_expert_msp,
            )
        else:
            new = old._replace(recent_event_ids=recent)
        self._remember(pid, old)
        self.entries[pid] = new
        changed = old is None or (old.program, old.indirect_provider_ids, old.azure_expert_msp) != (
            new.program,
            new.indirect_provider_ids,
            new.azure_expert_msp,
        )
        return False, changed

    def restore(self, entries: Iterable[tuple[str, PartnerEntry]]) -> None:
        """Put saved entries in (the host's own partner table, at a start): the later by order wins, as an
        event would, and nothing is kept to undo."""
        table = self.entries
        for pid, entry in entries:
            old = table.get(pid)
            if old is None or entry.order > old.order:
                table[pid] = entry

    def _remember(self, pid: str, old: PartnerEntry | None) -> None:
        if pid not in self._undo:
            self._undo[pid] = old

    def commit(self) -> None:
        self._undo.clear()

    def rollback(self) -> None:
        for pid, old in self._undo.items():
            if old is None:
                self.entries.pop(pid, None)
            else:
                self.entries[pid] = old
        self._undo.clear()
