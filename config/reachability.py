"""Wait for the brokers and the Schema Registry to answer before a command starts its work.

A dependency that is down or misaddressed gets retries with backoff and one log line per attempt
naming what is unreachable and where; past `MULTICHANNEL_STARTUP_TIMEOUT_S` the caller gets
`DependencyUnreachable` with a one-line message (commands exit with `UNREACHABLE_EXIT_CODE`), never a
traceback or a page of client logs. Brokers that answer but refuse the client (wrong password, unknown
user, a certificate the CA given does not sign) are not waited for: that raises an `AccessRefused` at once.
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from config.errors import DependencyUnreachable, TlsHandshakeFailed, access_refusal
from config.logs import get_logger
from config.settings import Settings

log = get_logger("multichannel.startup")

UNREACHABLE_EXIT_CODE = DependencyUnreachable.exit_code
"""What a command exits with when a dependency did not answer in time (the service's fatal code: a
supervisor restarts it)."""

_PROBE_TIMEOUT_S = 5.0
_MAX_BACKOFF_S = 10.0
_REFUSAL_CHECK_S = 0.5
"""How often a metadata probe looks at the client's errors for a refusal (they arrive within a second)."""


def _retry(
    what: str, where: str, probe: Callable[[float], str | None], settings: Settings, stop: Callable[[], bool]
) -> bool:
    """Call `probe(timeout)` (None when the dependency answered, else why not) until it answers: True, or
    False when `stop()` became true; raise DependencyUnreachable past the start-up timeout."""
    deadline = time.monotonic() + settings.startup_timeout_s
    backoff, attempt = 0.5, 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        # half of what is left at most: a dependency that never answers gets several logged attempts
        error = probe(max(0.5, min(_PROBE_TIMEOUT_S, left / 2)))
        if error is None:
            if attempt > 1:
                log.info(f"{what}_available", address=where, attempts=attempt)
            return True
        left = deadline - time.monotonic()
        wait = max(0.0, min(backoff, left))
        log.warning(f"{what}_unavailable", address=where, attempt=attempt, error=error, retry_in_s=round(wait, 1))
        if left <= 0:
            raise DependencyUnreachable(
                f"{what.replace('_', ' ')} at {where} did not answer within {settings.startup_timeout_s:g} s: {error}"
            )
        end = time.monotonic() + wait
        while time.monotonic() < end:
            if stop():
                return False
            time.sleep(min(0.1, end - time.monotonic()))  # a backoff between probes, checking for a stop
        backoff = min(backoff * 2, _MAX_BACKOFF_S)


def kafka_admin(settings: Settings, doing: str, **extra: Any) -> AdminClient:
    """An AdminClient of the settings; a CA file that cannot be read is a `TlsHandshakeFailed`, not a traceback."""
    try:
        return AdminClient({**settings.kafka_client_config(), **extra})
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        if isinstance(err, KafkaError) and "ssl" in err.str().lower():
            raise TlsHandshakeFailed(f"{doing}: MULTICHANNEL_SSL_CA_LOCATION cannot be used ({err.str()})") from None
        raise


def wait_for_brokers(settings: Settings, stop: Callable[[], bool] = lambda: False) -> bool:
    """Until a broker answers a metadata request (see `_retry`); an `AccessRefused` as soon as the brokers
    reject the credentials or the TLS handshake fails."""
    refusals: list[KafkaError] = []
    doing = f"connecting to the brokers at {settings.bootstrap_servers}"
    # the client's own connection errors would repeat on every reconnect: this probe logs once per attempt
    admin = kafka_admin(settings, doing, log_level=0, error_cb=refusals.append)

    def probe(timeout_s: float) -> str | None:
        end = time.monotonic() + timeout_s
        while True:
            try:
                slice_s = max(0.1, min(_REFUSAL_CHECK_S, end - time.monotonic()))
                if admin.list_topics(timeout=slice_s).brokers:
                    return None
                error = "no broker in the metadata"
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                error = err.str() if isinstance(err, KafkaError) else str(exc)
            admin.poll(0)  # serves error_cb: an authentication or TLS failure is reported there, not raised
            for reported in refusals:
                refused = access_refusal(reported, user=settings.sasl_username, doing=doing)
                if refused is not None:
                    raise refused
            refusals.clear()
            if time.monotonic() >= end:
                return error

    return _retry("kafka_brokers", settings.bootstrap_servers, probe, settings, stop)


def wait_for_registry(settings: Settings, stop: Callable[[], bool] = lambda: False) -> bool:
    """Until the Schema Registry answers its subjects listing (see `_retry`)."""
    url = settings.schema_registry_url.rstrip("/")
    if not url.startswith(("http://", "https://")):  # mock:// (tests): nothing to reach
        return True
    request = urllib.request.Request(f"{url}/subjects")  # noqa: S310 (http(s) only, checked above)
    auth = settings.schema_registry_basic_auth.get_secret_value()
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())

    def probe(timeout_s: float) -> str | None:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 (http(s) only)
                return None if resp.status < 500 else f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            return None if exc.code < 500 else f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            return str(getattr(exc, "reason", exc))

    return _retry("schema_registry", url, probe, settings, stop)
