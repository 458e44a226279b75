"""The service rides out broker restarts: no call hangs, a fencing by the broker's own transaction
timeout starts a new session in-process, and the committed outputs equal `classify`'s."""

from __future__ import annotations

import time
from pathlib import Path

from config.settings import Settings
from deploy.local.kafka import LocalKafka
from tests.integration.conftest import CACHE_DIR, make_settings
from tests.integration.pipeline import ServiceProcess, committed_offsets, input_end_offsets, publish
from tests.integration.test_service import assert_same_as_classify, split_partner_first, workload

OUTAGE_S = 12.0
"""Longer than the transaction timeout (10 s): the broker aborts the open transactions and bumps the
producers' epochs while it is away."""


class Supervisor:
    """Restarts an instance that exits with the fatal code, as a process supervisor would; any other exit
    fails the test."""

    def __init__(self, settings: Settings, tmp_path: Path, names: list[str]) -> None:
        self.settings, self.tmp_path = settings, tmp_path
        self.instances = {name: self._start(name, 0) for name in names}
        self.restarts = 0

    def _start(self, name: str, n: int) -> ServiceProcess:
        return ServiceProcess(self.settings, self.tmp_path / f"{name}-{n}.log", instance_id=name).start()

    def check(self) -> None:
        for name, svc in list(self.instances.items()):
            assert svc.proc is not None
            code = svc.proc.poll()
            if code is None:
                continue
            assert code == 3, f"instance {name} exited {code}:\n{svc.log_tail()}"
            self.restarts += 1
            self.instances[name] = self._start(name, self.restarts)

    def wait_processed(self, deadline_s: float) -> None:
        ends = input_end_offsets(self.settings)
        deadline = time.monotonic() + deadline_s
        while True:
            self.check()
            try:
                done = committed_offsets(self.settings, list(ends))
            except Exception:  # the broker may still be electing leaders: ask again
                done = {}
            if all(done.get(p, -1) >= end for p, end in ends.items() if end > 0):
                return
            if time.monotonic() > deadline:
                logs = "\n".join(s.log_tail(30) for s in self.instances.values())
                raise AssertionError(f"not processed in {deadline_s} s: {done} of {ends}\n{logs}")
            time.sleep(0.2)  # pacing the offset probe; each probe is a broker round trip

    def stop_all(self, deadline_s: float = 40.0) -> None:
        for name, svc in self.instances.items():
            assert svc.terminate(deadline_s) == 0, f"{name}:\n{svc.log_tail()}"

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("*.log")))


def test_three_broker_restarts_under_load_lose_and_double_nothing(tmp_path: Path, schema_registry_url: str) -> None:
    """Two instances; the broker is SIGKILLed right after each of three chunks is published and kept down
    longer than the transaction timeout, then restarted on the same data. Every instance recovers in
    process (never by an exit and a supervisor's restart), stops cleanly on SIGTERM, and the committed
    decisions and statuses equal `classify`'s record for record."""
    broker = LocalKafka(CACHE_DIR, tmp_path / "kafka").start()
    supervisor: Supervisor | None = None
    try:
        settings = make_settings(broker.bootstrap_servers, schema_registry_url, "outage", batch_size=200)
        items = workload(seed=41, customers=360)
        partners, rest = split_partner_first(items)
        size = len(rest) // 4 + 1
        chunks = [rest[i : i + size] for i in range(0, len(rest), size)]  # published in stream order
        publish(settings, partners)
        supervisor = Supervisor(settings, tmp_path, ["a", "b"])
        for svc in supervisor.instances.values():
            svc.wait_ready()
        publish(settings, chunks[0])
        supervisor.wait_processed(120)
        for chunk in chunks[1:]:
            publish(settings, chunk)
            assert broker.proc is not None
            broker.proc.kill()
            broker.proc.wait(30)
            time.sleep(OUTAGE_S)  # the fault itself: how long the broker stays away
            supervisor.check()
            broker.start(keep_data=True)
            supervisor.wait_processed(150)
        supervisor.stop_all()
        logs = supervisor.logs()
        # librdkafka's send_offsets_to_transaction can block past its timeout after a broker restart
        # (librdkafka issues 5456, 5511): the session gives that producer up and starts anew, in process
        assert supervisor.restarts == 0, logs.count('"watchdog_exit"')
        assert '"watchdog_exit"' not in logs
        assert_same_as_classify(settings, partners + rest)
    finally:
        if supervisor is not None:
            for svc in supervisor.instances.values():
                if svc.alive():
                    svc.kill()
        broker.stop()
