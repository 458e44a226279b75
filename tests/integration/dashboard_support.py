"""Test support for the dashboard: `multichannel dashboard` as a child process, and Debian's headless
Chromium driven by Playwright (never a browser of Playwright's own: nothing is downloaded)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from playwright.sync_api import Browser, Playwright

from config.settings import Settings
from deploy.local.process import free_port
from tests.integration.pipeline import PROJECT_ROOT, settings_env

CHROMIUM: Final = Path("/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MISSING_CHROMIUM: Final = (
    f"{CHROMIUM} is missing: the browser tests need Debian's chromium package. "
    "Run `bash deploy/local/chromium.sh` (as root it installs it; `make test` runs it first)."
)


def launch_chromium(playwright: Playwright) -> Browser:
    """Headless Chromium from /usr/bin/chromium (AssertionError with the way to install it when missing)."""
    assert CHROMIUM.exists(), MISSING_CHROMIUM
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@dataclass
class DashboardProcess:
    """`multichannel dashboard` on a free loopback port, reading the topics of `settings`."""

    settings: Settings
    log_path: Path
    token: str = ""
    metrics_url: str = ""
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DashboardProcess:
        env = settings_env(self.settings)
        env.update(
            MULTICHANNEL_DASHBOARD_PORT=str(self.port),
            MULTICHANNEL_DASHBOARD_TOKEN=self.token,
            MULTICHANNEL_DASHBOARD_METRICS_URL=self.metrics_url,
        )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(PROJECT_ROOT / ".venv" / "bin" / "multichannel"), "dashboard"], env=env, stdout=log, stderr=log
        )
        return self

    def get(self, path: str, token: str | None = None) -> tuple[int, Any]:
        """(HTTP status, decoded JSON or None) of an API path, with the bearer token when given."""
        request = urllib.request.Request(self.url + path)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def wait_caught_up(self, deadline_s: float = 60.0) -> dict[str, Any]:
        """Poll /api/status until the view has read every partition to its end; returns the status."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            try:
                code, body = self.get("/api/status", self.token)
            except OSError:  # not listening yet
                code, body = 0, None
            if code == 200 and body["caught_up"]:
                return dict(body)
            time.sleep(0.05)  # a child process starting up: nothing to block on, pace the probe
        raise AssertionError(f"dashboard not caught up in {deadline_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
