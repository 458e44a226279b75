"""Shared pieces of the local JVM services: free ports, the `java` binary, clean stopping."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from config.settings import Settings


def free_port() -> int:
    """A loopback port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def java_major(java: str) -> int:
    """The feature version of a `java` binary (17 for "17.0.15", 25 for "25.0.3")."""
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match is None:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def java_binary(min_major: int = 17) -> str:
    """A `java` of at least `min_major`: the java_home setting, $JAVA_HOME, PATH, then /usr/lib/jvm/*.

    JAVA_HOME and PATH are read as they are, not through the settings: they are the JDK's and the
    shell's own variables, not `MULTICHANNEL_` ones."""
    candidates: list[str] = []
    for home in (Settings().java_home, os.environ.get("JAVA_HOME")):
        if home:
            candidates.append(str(Path(home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    candidates += [str(p) for p in sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)]
    for java in candidates:
        if Path(java).exists() and java_major(java) >= min_major:
            return java
    raise RuntimeError(
        f"Java {min_major}+ is needed here but none was found (set MULTICHANNEL_JAVA_HOME); tried {candidates}"
    )


def stop_process(proc: subprocess.Popen[bytes] | None, grace_s: float = 30.0) -> None:
    """SIGTERM (runs the JVM's shutdown hooks), then SIGKILL after `grace_s`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def stop_pid(pid: int, grace_s: float = 30.0) -> None:
    """Stop a detached process by pid (the local stack started by another command)."""
    import time

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.1)  # polling a foreign pid: there is nothing to block on
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
