"""The watchdog ends a process whose blocking call overruns its deadline, or whose stop overruns, even
when the main thread is stuck where no Python signal handler can stop it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from consumers.watchdog import Watchdog

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _stuck_process(body: str) -> subprocess.Popen[str]:
    """A Python child that sets up a watchdog, says "blocked" and then blocks its main thread on a lock
    nobody releases (a signal handler runs, but the call goes on waiting, like a hung native call)."""
    script = textwrap.dedent(
        """
        import signal, threading
        from config.logs import configure_logging
        from consumers.watchdog import Watchdog
        configure_logging("INFO")
        lock = threading.Lock()
        lock.acquire()
        """
    ) + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _exit_log(proc: subprocess.Popen[str]) -> dict[str, str]:
    _out, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    exits = [line for line in lines if line.get("event") == "watchdog_exit"]
    assert len(exits) == 1, err
    line: dict[str, str] = exits[0]
    return line


def test_a_guarded_call_blocked_past_its_deadline_ends_the_process_with_the_fatal_code() -> None:
    """A call that ignores its own timeout is ended: exit code 3 and one log line naming the call."""
    proc = _stuck_process(
        """
        dog = Watchdog(exit_code=3, stop_deadline_s=60, grace_s=0.0, tick_s=0.05)
        dog.start()
        with dog.guard("send_offsets_to_transaction", 0.3):
            lock.acquire()
        """
    )
    line = _exit_log(proc)
    assert proc.returncode == 3
    assert line["reason"] == "send_offsets_to_transaction blocked past its deadline"


def test_sigterm_is_seen_while_the_main_thread_is_blocked_and_a_stuck_stop_ends_the_process() -> None:
    """The SIGTERM reaches the watchdog through the signal wakeup fd (the Python handler here does
    nothing); when the main thread does not finish within the stop deadline, the process ends with 3."""
    proc = _stuck_process(
        """
        signal.signal(signal.SIGTERM, lambda *_: None)
        dog = Watchdog(exit_code=3, stop_deadline_s=0.5, tick_s=0.05)
        dog.watch_signals()
        dog.start()
        print("blocked", flush=True)
        lock.acquire()
        """
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "blocked"
    proc.send_signal(signal.SIGTERM)
    line = _exit_log(proc)
    assert proc.returncode == 3
    assert line["reason"] == "stop not finished in 0.5 s"


def test_time_in_an_inner_guard_is_not_charged_to_the_outer_one() -> None:
    """A restore (inner guard) inside a consume call (outer guard) may take longer than the outer call's
    own deadline; the outer deadline moves by the time spent inside."""
    fired = threading.Event()
    dog = Watchdog(exit_code=3, stop_deadline_s=60, grace_s=0.0, tick_s=0.02, exit=lambda _code: fired.set())
    dog.start()
    try:
        with dog.guard("consume", 0.3), dog.guard("changelog restore", 5.0):
            assert not fired.wait(0.6), dog.fired  # past the outer deadline, inside the inner one
        assert not fired.wait(0.1), dog.fired
        with dog.guard("consume", 0.1):
            assert fired.wait(5), "an overrun after the inner guard is still caught"
        assert dog.fired == "consume blocked past its deadline"
    finally:
        dog.close()
