"""The benchmark's practical limit: a plain confluent-kafka loop that consumes the input and
produces the same bytes to an output topic, in batches, committing offsets after each batch.

Usage: `python -m benchmarks.passthrough BOOTSTRAP INPUT OUTPUT GROUP`; SIGTERM stops it.
"""

from __future__ import annotations

import signal
import sys

from confluent_kafka import Consumer, Producer

from config.logs import kafka_client_logger


def main() -> None:
    bootstrap, source, sink, group = sys.argv[1:5]
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "logger": kafka_client_logger(),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "logger": kafka_client_logger(),
            "linger.ms": 5,
            "compression.type": "lz4",
            "enable.idempotence": True,
        }
    )
    consumer.subscribe([source])
    while not stop:
        msgs = consumer.consume(num_messages=2000, timeout=0.1)
        good = [{"key": m.key(), "value": m.value()} for m in msgs if m.error() is None]
        if not good:
            continue
        pending = good
        while pending:
            producer.produce_batch(sink, pending)
            pending = [m for m in pending if "_error" in m]
            for m in pending:
                del m["_error"]
            producer.poll(0 if not pending else 0.05)
        consumer.commit(asynchronous=True)
    producer.flush(10)
    consumer.close()


if __name__ == "__main__":
    main()
