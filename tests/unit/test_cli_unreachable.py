"""Commands that need the brokers or the registry, pointed at an address where nothing listens: they
retry until MULTICHANNEL_STARTUP_TIMEOUT_S, then exit 3 with one line naming the address."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["topics", "create"], "kafka brokers at 127.0.0.1:{port}"),
        (["schemas", "check"], "schema registry at http://127.0.0.1:{port}"),
        (["schemas", "register"], "schema registry at http://127.0.0.1:{port}"),
        (["tail", "--json"], "kafka brokers at 127.0.0.1:{port}"),
        (["produce", "{events}"], "kafka brokers at 127.0.0.1:{port}"),
        (["generate", "--publish", "--events", "5"], "kafka brokers at 127.0.0.1:{port}"),
        (["rules", "preview", "--to", "current"], "kafka brokers at 127.0.0.1:{port}"),
    ],
    ids=["topics-create", "schemas-check", "schemas-register", "tail", "produce", "generate-publish", "rules-preview"],
)
def test_an_unreachable_dependency_gives_one_line_and_exit_3(args: list[str], names: str, tmp_path: Path) -> None:
    """Exit code 3, the address in a one-line error after `did not answer within 1 s`, no traceback."""
    port = _closed_port()
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_type": "subscription_purchased"}\n')
    args = [a.replace("{events}", str(events)) for a in args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MULTICHANNEL_")}
    env |= {
        "MULTICHANNEL_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "MULTICHANNEL_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{port}",
        "MULTICHANNEL_STARTUP_TIMEOUT_S": "1",
        "COLUMNS": "300",
    }
    done = subprocess.run(
        [str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if "did not answer within 1 s" in line]
    assert len(errors) == 1 and names.format(port=port) in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "%3|" not in done.stderr
