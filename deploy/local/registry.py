"""Apicurio Registry (in-memory storage) from its Maven distribution, on loopback.

Its Confluent-compatible API (`/apis/ccompat/v7`) is what confluent-kafka's Schema Registry client
talks to; the management interface is moved to a free port so that nothing binds 9000.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from deploy.local.artifacts import apicurio_home
from deploy.local.process import free_port, java_binary, stop_process, tail

CCOMPAT_PATH = "/apis/ccompat/v7"
REGISTRY_JAVA = 21
"""Apicurio 3.3 is compiled for Java 21 (class file 65)."""


class LocalRegistry:
    """Start, wait for, and stop one local Apicurio Registry."""

    def __init__(self, cache_dir: Path, work_dir: Path | None = None, heap: str = "384m") -> None:
        self.cache_dir = cache_dir
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="mc-registry-"))
        self.heap = heap
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "registry.log"

    def start(self, timeout_s: float = 90.0) -> LocalRegistry:
        home = apicurio_home(self.cache_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        out = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [
                java_binary(REGISTRY_JAVA),
                f"-Xmx{self.heap}",
                "-XX:TieredStopAtLevel=1",
                "-Dquarkus.http.host=127.0.0.1",
                f"-Dquarkus.http.port={self.port}",
                "-Dquarkus.management.host=127.0.0.1",
                f"-Dquarkus.management.port={free_port()}",
                "-Dquarkus.log.level=WARN",
                "-Dapicurio.logging.audit.enabled=false",
                "-Dquarkus.http.access-log.enabled=false",
                '-Dquarkus.log.category."io.apicurio".level=WARN',
                f"-Djava.io.tmpdir={self.work_dir}",
                "-jar",
                str(home / "quarkus-run.jar"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=self.work_dir,
            start_new_session=True,
        )
        out.close()
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"registry exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/subjects", timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)  # connection refused answers at once: pace the retries
            if time.monotonic() > deadline:
                raise TimeoutError(f"registry not ready in {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, *, remove_data: bool = True) -> None:
        stop_process(self.proc)
        self.proc = None
        if remove_data:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def log_tail(self, lines: int = 60) -> str:
        return tail(self.log_file, lines)
