"""The README is the user's manual: it must name every setting and the two set-up commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from config.settings import Settings, env_name

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_documents_every_setting() -> None:
    """The README names the environment variable of every setting."""
    missing = [name for name in Settings.model_fields if f"`{env_name(name)}`" not in README]
    assert not missing


def test_readme_gives_the_two_commands_first() -> None:
    """The README's first code block gives `make run` and `make test`."""
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block


def test_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings written to the environment with to_env read back equal, secrets included."""
    original = Settings(
        batch_size=17, sasl_password=SecretStr("s3cret"), application_id="app-x", otel_traces_exporter="console,otlp"
    )
    for key, value in original.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == original


def test_an_invalid_variable_is_described_by_name_without_a_secret_value() -> None:
    """An invalid setting is described by its variable name, quoting the value unless it is a secret."""
    from pydantic import ValidationError

    from config.settings import describe_invalid_settings

    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"batch_size": "many", "sasl_password": 5})
    lines = dict(line.split(": ", 1) for line in describe_invalid_settings(caught.value).splitlines())
    assert set(lines) == {"MULTICHANNEL_BATCH_SIZE", "MULTICHANNEL_SASL_PASSWORD"}
    assert "'many'" in lines["MULTICHANNEL_BATCH_SIZE"]
    assert "5" not in lines["MULTICHANNEL_SASL_PASSWORD"]


def test_the_tracing_settings_read_the_standard_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing is off by default; OTEL_TRACES_EXPORTER turns it on, OTEL_SDK_DISABLED off again, and a bad
    exporter name is reported under its OTEL_ name."""
    from pydantic import ValidationError

    from config.settings import describe_invalid_settings

    assert not Settings().tracing
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "classifier-x")
    monkeypatch.setenv("MULTICHANNEL_OTEL_SERVICE_NAME", "not read")
    s = Settings()
    assert s.tracing and s.otel_service_name == "classifier-x"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not Settings().tracing
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert describe_invalid_settings(caught.value).startswith("OTEL_TRACES_EXPORTER: ")
