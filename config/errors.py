"""The errors that end a command with one line and an exit code, under one root.

    CommandError                    reason code              exit
    ├── DependencyUnreachable       DEPENDENCY_UNREACHABLE   3  a broker or the registry did not answer in time
    ├── ServiceError (consumers)    FATAL_CLIENT_ERROR       3  the service's Kafka clients cannot go on
    └── AccessRefused                                       4  the brokers answered and said no: a retry cannot help
        ├── AuthenticationFailed    AUTHENTICATION_FAILED       unknown SASL user or wrong password
        ├── TlsHandshakeFailed      TLS_HANDSHAKE_FAILED        the brokers' certificate is not signed by the CA given
        │                                                       (or the CA file cannot be read)
        └── AuthorizationDenied     AUTHORIZATION_DENIED        an ACL denies an operation the command needs

The reason codes are stable: they are the `event` of the service's last log line (lower case) and what
operators search for. A message never holds a secret: it names users, topics and addresses only.
"""

from __future__ import annotations

from typing import ClassVar

from confluent_kafka import KafkaError


class CommandError(Exception):
    """A condition that ends a command: its message is the one line the user sees."""

    reason: ClassVar[str] = "COMMAND_FAILED"
    exit_code: ClassVar[int] = 1


class DependencyUnreachable(CommandError):
    """A broker or the registry did not answer within the start-up timeout."""

    reason = "DEPENDENCY_UNREACHABLE"
    exit_code = 3


class AccessRefused(CommandError):
    """The brokers answered and refused the client: retrying with the same settings cannot succeed."""

    reason = "ACCESS_REFUSED"
    exit_code = 4


class AuthenticationFailed(AccessRefused):
    reason = "AUTHENTICATION_FAILED"


class TlsHandshakeFailed(AccessRefused):
    reason = "TLS_HANDSHAKE_FAILED"


class AuthorizationDenied(AccessRefused):
    reason = "AUTHORIZATION_DENIED"


_AUTHENTICATION_CODES = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
_AUTHORIZATION_CODES: dict[int, str] = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "consumer group",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "cluster",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "transactional id",
}


_DETAIL_CHARS = 300
"""A broker's error text can hold a dump of the request: the line keeps its start."""


def _detail(err: KafkaError) -> str:
    text = " ".join(str(err.str()).split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"


def is_refusal(err: KafkaError | None) -> bool:
    """The brokers refused the client (credentials, TLS, ACLs): a retry with the same settings cannot help."""
    return err is not None and (
        err.code() in _AUTHENTICATION_CODES or err.code() == KafkaError._SSL or err.code() in _AUTHORIZATION_CODES
    )


def is_authorization(err: KafkaError | None) -> bool:
    return err is not None and err.code() in _AUTHORIZATION_CODES


def access_refusal(err: KafkaError | None, *, user: str, doing: str, denied: str = "") -> AccessRefused | None:
    """The refusal `err` stands for (None when it is not one), with a message naming the SASL `user`, what
    was being done and, for a denied operation, what is denied (`denied`, e.g. "WRITE on topic t")."""
    if err is None:
        return None
    code = err.code()
    who = f"SASL user {user!r}" if user else "the client"
    if code in _AUTHENTICATION_CODES:
        return AuthenticationFailed(f"{doing}: the brokers rejected the credentials of {who} ({_detail(err)})")
    if code == KafkaError._SSL:
        return TlsHandshakeFailed(
            f"{doing}: TLS handshake failed, the brokers' certificate is not trusted by MULTICHANNEL_SSL_CA_LOCATION "
            f"({_detail(err)})"
        )
    kind = _AUTHORIZATION_CODES.get(code)
    if kind is not None:
        return AuthorizationDenied(f"{doing}: the ACLs deny {who} {denied or f'access to a {kind}'} ({_detail(err)})")
    return None
