"""Refusals by the brokers become one-line errors with stable reason codes; the shipped ACLs follow the
settings; the secured local broker leaves no listener unauthenticated."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from config.errors import (
    AccessRefused,
    AuthenticationFailed,
    AuthorizationDenied,
    CommandError,
    DependencyUnreachable,
    TlsHandshakeFailed,
    access_refusal,
    is_refusal,
)
from config.settings import Settings
from consumers.kafka_errors import FatalClientError
from deploy.acls import service_acls
from deploy.local.kafka import BrokerSecurity


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        (KafkaError._AUTHENTICATION, AuthenticationFailed, "AUTHENTICATION_FAILED"),
        (KafkaError.SASL_AUTHENTICATION_FAILED, AuthenticationFailed, "AUTHENTICATION_FAILED"),
        (KafkaError._SSL, TlsHandshakeFailed, "TLS_HANDSHAKE_FAILED"),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, AuthorizationDenied, "AUTHORIZATION_DENIED"),
        (KafkaError.GROUP_AUTHORIZATION_FAILED, AuthorizationDenied, "AUTHORIZATION_DENIED"),
        (KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, AuthorizationDenied, "AUTHORIZATION_DENIED"),
        (KafkaError.CLUSTER_AUTHORIZATION_FAILED, AuthorizationDenied, "AUTHORIZATION_DENIED"),
    ],
)
def test_a_refusal_code_becomes_its_error_with_exit_code_4(code: int, kind: type[AccessRefused], reason: str) -> None:
    """Each refusal names what was being done and whose credentials (or which CA) failed, on one line; exit 4."""
    refused = access_refusal(KafkaError(code, "broker said no\nsecond line"), user="svc", doing="topics create")
    assert isinstance(refused, kind) and refused.reason == reason and refused.exit_code == 4
    assert str(refused).startswith("topics create: ") and "\n" not in str(refused)
    names = "MULTICHANNEL_SSL_CA_LOCATION" if kind is TlsHandshakeFailed else "'svc'"
    assert names in str(refused)
    assert is_refusal(KafkaError(code))


@pytest.mark.parametrize("code", [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT])
def test_a_transient_error_is_not_a_refusal(code: int) -> None:
    """Connection trouble is waited for (start-up timeout), not reported as a refusal."""
    assert access_refusal(KafkaError(code), user="svc", doing="x") is None and not is_refusal(KafkaError(code))


def test_a_denial_names_what_is_denied_and_a_long_broker_text_is_cut() -> None:
    """The denied right is in the message; a broker's request dump does not make it a page long."""
    err = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Request(" + "x" * 5000 + ")")
    message = str(access_refusal(err, user="svc", doing="run", denied="WRITE on topic out"))
    assert "deny SASL user 'svc' WRITE on topic out" in message and len(message) < 400


def test_every_command_error_has_one_root_and_a_stable_reason() -> None:
    """Unreachable, refused and fatal errors share the root the CLI turns into one line and an exit code."""
    for kind, code in ((DependencyUnreachable, 3), (FatalClientError, 3), (AuthenticationFailed, 4)):
        assert issubclass(kind, CommandError) and kind.exit_code == code and kind.reason.isupper()


def test_the_shipped_acls_follow_the_settings_and_grant_nothing_on_the_cluster() -> None:
    """Topics, groups and the transactional-id prefix come from the settings; no CREATE, ALTER, ALL or cluster."""
    s = Settings(application_id="app7", subscription_topic="in", decision_topic="out", sasl_username="svc")
    acls = service_acls(s)
    rights = {(a.resource_type, a.resource_name, a.pattern_type, a.operation) for a in acls}
    assert ("TOPIC", "in", "LITERAL", "READ") in rights and ("TOPIC", "out", "LITERAL", "WRITE") in rights
    assert {("TOPIC", "app7-state-changelog", "LITERAL", op) for op in ("READ", "WRITE")} <= rights
    assert ("GROUP", "app7", "LITERAL", "READ") in rights
    assert ("TRANSACTIONAL_ID", "app7-", "PREFIXED", "WRITE") in rights
    assert {a.principal for a in acls} == {"User:svc"}
    assert not {op for *_rest, op in rights} & {"ALL", "CREATE", "ALTER", "DELETE", "IDEMPOTENT_WRITE"}
    assert {a.resource_type for a in acls} == {"TOPIC", "GROUP", "TRANSACTIONAL_ID"}


def test_the_secured_broker_has_no_unauthenticated_listener(tmp_path: Path) -> None:
    """Clients get SASL_SSL, the controller SASL PLAIN on loopback; only the admin is a super user."""
    security = BrokerSecurity(tmp_path / "k.pem", tmp_path / "ca.pem", "admin", "pw", {"svc": "pw2"})
    props = security.server_properties(9092, 9093)
    protocols = {entry.split(":")[1] for entry in props["listener.security.protocol.map"].split(",")}
    assert protocols == {"SASL_SSL", "SASL_PLAINTEXT"}
    assert props["super.users"] == "User:admin" and "ANONYMOUS" not in str(props)
    assert security.scram_arguments().count("--add-scram") == 2


def test_a_password_the_format_tool_cannot_hold_is_refused(tmp_path: Path) -> None:
    """SCRAM credentials are split on commas by the format tool: such a password is an error, not a wrong user."""
    with pytest.raises(ValueError, match="svc"):
        BrokerSecurity(tmp_path / "k.pem", tmp_path / "ca.pem", "admin", "pw", {"svc": "a,b"})
