"""The local stack (broker + registry) as the CLI runs it: detached processes described by a state
file, so that `broker start`, `broker status` and `broker stop` can be separate commands."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deploy.local.kafka import LocalKafka
from deploy.local.process import pid_alive, stop_pid
from deploy.local.registry import LocalRegistry


@dataclass(frozen=True)
class StackInfo:
    bootstrap_servers: str
    schema_registry_url: str
    kafka_pid: int
    registry_pid: int
    kafka_dir: str
    registry_dir: str

    @property
    def kafka_log(self) -> Path:
        return Path(self.kafka_dir) / "logs" / "server.log"


def state_file(state_dir: Path) -> Path:
    return state_dir / "endpoints.json"


def read_stack(state_dir: Path) -> StackInfo | None:
    try:
        return StackInfo(**json.loads(state_file(state_dir).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def stack_running(info: StackInfo) -> bool:
    return pid_alive(info.kafka_pid) and pid_alive(info.registry_pid)


def start_stack(cache_dir: Path, state_dir: Path) -> StackInfo:
    """Start broker and registry side by side (both JVMs boot at once) and record them."""
    current = read_stack(state_dir)
    if current is not None and stack_running(current):
        return current
    if current is not None:
        stop_stack(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    kafka = LocalKafka(cache_dir, state_dir / "kafka")
    registry = LocalRegistry(cache_dir, state_dir / "registry")
    with ThreadPoolExecutor(2) as pool:
        started: list[Future[Any]] = [pool.submit(kafka.start), pool.submit(registry.start)]
        errors = [f.exception() for f in started]
    if any(errors):
        kafka.stop()
        registry.stop()
        raise next(e for e in errors if e is not None)
    assert kafka.proc is not None and registry.proc is not None
    info = StackInfo(
        kafka.bootstrap_servers,
        registry.url,
        kafka.proc.pid,
        registry.proc.pid,
        str(kafka.work_dir),
        str(registry.work_dir),
    )
    state_file(state_dir).write_text(json.dumps(asdict(info), indent=2))
    return info


def stop_stack(state_dir: Path) -> bool:
    """Stop whatever the state file names; True when something was running."""
    info = read_stack(state_dir)
    if info is None:
        return False
    was_running = pid_alive(info.kafka_pid) or pid_alive(info.registry_pid)
    stop_pid(info.registry_pid)
    stop_pid(info.kafka_pid)
    for d in (info.kafka_dir, info.registry_dir):
        shutil.rmtree(d, ignore_errors=True)
    state_file(state_dir).unlink(missing_ok=True)
    return was_running


@contextmanager
def local_stack(cache_dir: Path, state_dir: Path) -> Iterator[StackInfo]:
    """A stack for the duration of a block (the demo): stopped on exit, also after Ctrl-C."""
    info = start_stack(cache_dir, state_dir)
    try:
        yield info
    finally:
        stop_stack(state_dir)
