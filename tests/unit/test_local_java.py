"""The local broker and registry find their JDK through the settings first, then the JDK's own JAVA_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.local.process import java_binary


def _fake_jdk(root: Path, version: str) -> Path:
    """A JDK home whose `bin/java -version` answers as that release's java does (on stderr)."""
    java = root / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2025-01-01' >&2\n")
    java.chmod(0o755)
    return root


def test_the_java_home_setting_comes_before_java_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MULTICHANNEL_JAVA_HOME (the java_home setting) wins over JAVA_HOME when both are new enough."""
    ours = _fake_jdk(tmp_path / "ours", "21.0.4")
    monkeypatch.setenv("MULTICHANNEL_JAVA_HOME", str(ours))
    monkeypatch.setenv("JAVA_HOME", str(_fake_jdk(tmp_path / "theirs", "25.0.1")))
    assert java_binary(21) == str(ours / "bin" / "java")


def test_a_java_home_setting_too_old_gives_way_to_java_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A JDK older than the one asked for is passed over for the next candidate, JAVA_HOME."""
    monkeypatch.setenv("MULTICHANNEL_JAVA_HOME", str(_fake_jdk(tmp_path / "ours", "17.0.9")))
    theirs = _fake_jdk(tmp_path / "theirs", "21.0.4")
    monkeypatch.setenv("JAVA_HOME", str(theirs))
    assert java_binary(21) == str(theirs / "bin" / "java")
