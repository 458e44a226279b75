"""The downstream view: committed decisions and customer statuses as a dashboard reads them
(`isolation.level=read_committed`), decoded, filtered, and rendered as a live table."""

from __future__ import annotations

import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer
from rich.table import Table

from config.errors import access_refusal
from config.registry import registry_client
from config.settings import Settings
from consumers.serde import Decoder
from schemas import CUSTOMER_STATUS, SUBSCRIPTION_DECISION


class DecisionTail:
    """Reads the decision and status topics from the beginning (or the end with `from_end`)."""

    def __init__(self, settings: Settings, *, from_end: bool = False) -> None:
        self.settings = settings
        client = registry_client(settings)
        self._decoders = {
            settings.decision_topic: ("subscription_decision", Decoder(client, SUBSCRIPTION_DECISION)),
            settings.status_topic: ("customer_status", Decoder(client, CUSTOMER_STATUS)),
        }
        self._consumer = Consumer(
            {
                **settings.kafka_client_config(),
                "group.id": f"multichannel-tail-{uuid.uuid4().hex[:8]}",
                "isolation.level": "read_committed",
                "auto.offset.reset": "latest" if from_end else "earliest",
                "enable.auto.commit": False,
            }
        )
        self._consumer.subscribe(list(self._decoders))

    def poll(self, timeout_s: float = 0.5, max_records: int = 500) -> Iterator[dict[str, Any]]:
        """Committed records that arrived, each with `record_type`; an `AccessRefused` when the brokers
        refuse the client or the ACLs deny reading."""
        for msg in self._consumer.consume(max_records, timeout=timeout_s):
            err = msg.error()
            if err is not None:
                denied = f"READ on topic {msg.topic()}" if msg.topic() else ""
                refused = access_refusal(err, user=self.settings.sasl_username, doing="tail", denied=denied)
                if refused is not None:
                    raise refused
                continue
            kind, decoder = self._decoders[msg.topic() or ""]
            item = decoder.decode_values([msg.value()])[0]
            if isinstance(item, dict):
                yield {"record_type": kind, **item}

    def close(self) -> None:
        self._consumer.close()


@dataclass
class TailView:
    """The last records and running counts, rendered as a rich table."""

    partner: str | None = None
    customer: str | None = None
    rows: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    decisions: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)

    def accepts(self, record: dict[str, Any]) -> bool:
        return (self.partner is None or record["partner_id"] == self.partner) and (
            self.customer is None or record["customer_id"] == self.customer
        )

    def add(self, record: dict[str, Any]) -> None:
        if record["record_type"] == "subscription_decision":
            self.decisions[record["decision"]] += 1
            self.rows.append(record)
        else:
            self.statuses[record["status"]] += 1

    def render(self) -> Table:
        table = Table(
            "decided at",
            "partner",
            "customer",
            "subscription",
            "decision",
            "reason",
            "rule",
            "blocked until",
            title="multichannel decisions (committed)",
            caption="  ".join(f"{k}={v}" for k, v in sorted(self.decisions.items())) or "waiting for decisions…",
        )
        for r in self.rows:
            table.add_row(
                str(r["decided_at"])[:19],
                r["partner_id"],
                r["customer_id"],
                r["subscription_id"],
                r["decision"],
                r["reason"],
                r["rule"],
                str(r["blocked_until"] or ""),
            )
        return table
