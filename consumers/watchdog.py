"""A watchdog for blocking client calls and for shutdown.

A native librdkafka call can block past its own timeout (seen: `send_offsets_to_transaction` after a
broker restart), and while the main thread is inside C no Python signal handler runs, so SIGTERM is
ignored too. The watchdog is a daemon thread that

- ends the process with the fatal exit code when a guarded call overruns its deadline (the supervisor
  restarts it; a restarted instance fences the stuck one's transaction), and
- sees SIGTERM/SIGINT arrive even while the main thread is blocked (through the signal wakeup fd, which
  the C-level handler writes at once) and ends the process when a stop overruns its deadline.

Guards nest: time spent in an inner guard (a restore inside a rebalance callback inside `consume`) is
not charged to the outer one.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from config.logs import get_logger

log = get_logger("multichannel.watchdog")

GRACE_S = 10.0
"""Added to every guarded call's own timeout: librdkafka's timeouts are not exact."""


@dataclass
class _Guard:
    what: str
    deadline: float


def exit_now(code: int) -> None:
    """Flush what was logged and leave without running Python's shutdown (which could block too)."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


class Watchdog:
    """See the module docstring. `exit` is replaceable for tests."""

    def __init__(
        self,
        *,
        exit_code: int,
        stop_deadline_s: float,
        grace_s: float = GRACE_S,
        tick_s: float = 0.25,
        exit: Callable[[int], None] = exit_now,
    ) -> None:
        self.exit_code = exit_code
        self.grace_s = grace_s
        self.stop_deadline_s = stop_deadline_s
        self._tick_s = tick_s
        self._exit = exit
        self._guards: list[_Guard] = []
        self._lock = threading.Lock()
        self._stop_requested_at: float | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._wakeup: tuple[socket.socket, socket.socket] | None = None
        self.fired: str | None = None
        """What the watchdog ended the process for (tests with a non-exiting `exit`)."""

    # ------------------------------------------------------------------ set-up
    def watch_signals(self) -> None:
        """Have the C-level signal handler write each signal to a socket this thread reads (main thread only;
        call after the Python handlers are installed)."""
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self._wakeup = (reader, writer)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._wakeup is not None:
            if threading.current_thread() is threading.main_thread():
                signal.set_wakeup_fd(-1)
            for sock in self._wakeup:
                sock.close()
            self._wakeup = None

    # ------------------------------------------------------------------ use
    @contextmanager
    def guard(self, what: str, timeout_s: float) -> Iterator[None]:
        """Run the block under a deadline of `timeout_s` + the grace."""
        started = time.monotonic()
        entry = _Guard(what, started + timeout_s + self.grace_s)
        with self._lock:
            self._guards.append(entry)
        try:
            yield
        finally:
            spent = time.monotonic() - started
            with self._lock:
                self._guards.remove(entry)
                for outer in self._guards:
                    outer.deadline += spent

    def stop_requested(self) -> None:
        """Start the stop deadline (also started by a SIGTERM/SIGINT seen on the wakeup fd)."""
        with self._lock:
            if self._stop_requested_at is None:
                self._stop_requested_at = time.monotonic()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wait_tick()
            reason = self._overrun(time.monotonic())
            if reason is not None and not self._stopped.is_set():
                self.fired = reason
                log.error("watchdog_exit", reason=reason, exit_code=self.exit_code)
                self._exit(self.exit_code)
                return

    def _wait_tick(self) -> None:
        if self._wakeup is None:
            self._stopped.wait(self._tick_s)
            return
        reader = self._wakeup[0]
        readable, _w, _x = select.select([reader], [], [], self._tick_s)
        if not readable:
            return
        try:
            data = reader.recv(64)
        except (BlockingIOError, OSError):
            return
        if any(b in (signal.SIGTERM, signal.SIGINT) for b in data):
            self.stop_requested()

    def _overrun(self, now: float) -> str | None:
        with self._lock:
            innermost = self._guards[-1] if self._guards else None
            stop_at = self._stop_requested_at
        if innermost is not None and now > innermost.deadline:
            return f"{innermost.what} blocked past its deadline"
        if stop_at is not None and now - stop_at > self.stop_deadline_s:
            return f"stop not finished in {self.stop_deadline_s:g} s"
        return None
