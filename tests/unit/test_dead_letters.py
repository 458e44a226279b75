"""Dead letters keep the input record whole when it fits the dead-letter topic's limit, and otherwise
fit it by cutting what the `error.truncated` header names; unreadable schema ids are remembered in
bounded memory."""

from __future__ import annotations

import struct

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers import serde
from consumers.dead_letters import _size, fit, truncated_parts
from consumers.messages import Headers
from consumers.serde import Decoder
from multichannel.errors import SchemaMismatch
from schemas import SUBSCRIPTION_EVENT

LIMIT = 64 * 1024
WHY: Headers = [("error.reason", b"SCHEMA_MISMATCH"), ("error.message", b"m" * 900), ("source.topic", b"t")]


def _wire(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    return len(key or b"") + len(value or b"") + _size(headers)


def test_a_record_that_fits_is_kept_byte_for_byte() -> None:
    """Key, value and the record's own headers stay as they are, the reason headers follow."""
    own: Headers = [("trace", b"t-1"), ("empty", None)]
    key, value, headers = fit(b"C-1", b"v" * 60_000, own, WHY, LIMIT)
    assert (key, value, headers) == (b"C-1", b"v" * 60_000, [*own, *WHY])
    assert truncated_parts(headers) is None


def test_a_value_too_large_is_cut_to_its_first_bytes_and_says_so() -> None:
    """The value keeps its first bytes; key and own headers stay; the original sizes are given."""
    own: Headers = [("trace", b"t-1")]
    key, value, headers = fit(b"C-1", b"abc" * 100_000, own, WHY, LIMIT)
    assert key == b"C-1" and value is not None and value != b"abc" * 100_000
    assert (b"abc" * 100_000).startswith(value) and len(value) > LIMIT // 2
    named = dict(headers)
    assert named["trace"] == b"t-1" and named["error.truncated"] == b"value"
    assert named["source.value.bytes"] == b"300000" and named["source.key.bytes"] == b"3"
    assert _wire(key, value, headers) <= LIMIT


def test_a_huge_key_is_cut_and_leaves_no_room_for_headers_or_value() -> None:
    """A key larger than the limit is cut, the headers and value dropped, and the record fits."""
    key, value, headers = fit(b"k" * 200_000, b"v" * 10, [("h", b"x")], WHY, LIMIT)
    assert truncated_parts(headers) == "key,headers,value"
    assert key is not None and key.startswith(b"kkk") and value == b""
    assert _wire(key, value, headers) <= LIMIT


sizes = st.integers(min_value=0, max_value=3 * LIMIT)


@settings(max_examples=200, deadline=None)
@given(sizes, sizes, st.lists(st.tuples(st.text(max_size=20), sizes), max_size=4), st.booleans())
def test_every_dead_letter_fits_and_is_whole_or_marked(
    key_n: int, value_n: int, own_n: list[tuple[str, int]], null: bool
) -> None:
    """Whatever the sizes, the dead letter fits the limit; unless `error.truncated` says otherwise,
    key, value and own headers are the input's, and a cut part is a prefix of the original."""
    key, value = b"k" * key_n, None if null else b"v" * value_n
    own: Headers = [(name, b"h" * n) for name, n in own_n]
    got_key, got_value, headers = fit(key, value, own, WHY, LIMIT)
    assert _wire(got_key, got_value, headers) <= LIMIT
    cut = (truncated_parts(headers) or "").split(",")
    assert (got_key == key) != ("key" in cut) and key.startswith(got_key or b"")
    assert (got_value == value) != ("value" in cut) and (value or b"").startswith(got_value or b"")
    assert headers[: len(own)] == own or "headers" in cut


def test_unreadable_schema_ids_are_remembered_in_bounded_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Records with ever new unknown schema ids keep at most the bound of them, the newest."""
    monkeypatch.setattr(serde, "_UNREADABLE_IDS_KEPT", 50)
    decoder = Decoder(SchemaRegistryClient.new_client({"url": "mock://dead-letter-tests"}), SUBSCRIPTION_EVENT)
    values = [b"\x00" + struct.pack(">I", 10_000 + n) + b"body" for n in range(200)]
    assert all(isinstance(r, SchemaMismatch) for r in decoder.decode_values(values))
    assert len(decoder._unreadable) == 50 and 10_199 in decoder._unreadable
