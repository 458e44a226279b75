"""Throughput of one run: a variant's group's committed offsets, followed from outside its process."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
from confluent_kafka import Consumer, TopicPartition

from benchmarks.common import BenchError, RunResult
from benchmarks.variants import Launch, running
from config.settings import Settings


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure_throughput(
    settings: Settings, launch: Launch, topic: str, total: int, accounts: int | None, timeout_s: float
) -> RunResult:
    """Start the variant and follow its group's committed offsets until they cover the topic."""
    watcher = Consumer({**settings.kafka_client_config(), "group.id": launch.group, "enable.auto.commit": False})
    partitions = [TopicPartition(topic, p) for p in range(settings.input_partitions)]
    try:
        with running(launch) as proc:
            ps = psutil.Process(proc.pid)
            deadline = time.monotonic() + timeout_s
            start: tuple[float, int, float, int] | None = None
            while True:
                if proc.poll() is not None:
                    raise BenchError(f"{launch.argv[-1]} exited with {proc.returncode}; see {launch.log}")
                committed = sum(max(tp.offset, 0) for tp in watcher.committed(partitions, timeout=10))
                now = time.monotonic()
                times = ps.cpu_times()
                cpu = times.user + times.system
                if start is None and committed > 0:
                    start = (now, committed, cpu, ps.memory_info().rss)
                if committed >= total and start is not None:
                    break
                if now > deadline:
                    raise BenchError(f"{launch.log.stem}: {committed} of {total} events in {timeout_s:.0f} s")
                time.sleep(0.1)  # sampling period of the outside observer
            peak = _peak_rss_mb(proc.pid)
    finally:
        watcher.close()
    t0, n0, cpu0, rss0 = start
    seconds = max(now - t0, 1e-6)
    events = max(committed - n0, 1)
    return RunResult(
        events_per_s=round(events / seconds),
        seconds=round(seconds, 2),
        cpu_s_per_1k=round((cpu - cpu0) / events * 1000, 4),
        peak_rss_mb=round(peak, 1),
        bytes_per_account=None if not accounts else round((peak * 1024 * 1024 - rss0) / accounts),
    )
