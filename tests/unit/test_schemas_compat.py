"""The local compatibility check names the field that breaks, at each registry level."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from schemas import schema_str
from schemas.compat import can_read, incompatibilities

OLD = schema_str("subscription_event")


def changed(edit: Callable[[dict[str, Any]], None], base: str = OLD) -> str:
    schema = json.loads(base)
    edit(schema)
    return json.dumps(schema)


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in schema["fields"] if f["name"] == name)
    return found


def add_required(s: dict[str, Any]) -> None:
    s["fields"].append({"name": "region", "type": "string", "doc": "new"})


def add_optional(s: dict[str, Any]) -> None:
    s["fields"].append({"name": "region", "type": ["null", "string"], "default": None, "doc": "new"})


def remove_required(s: dict[str, Any]) -> None:
    s["fields"].remove(field(s, "event_id"))


def retype_quantity(s: dict[str, Any]) -> None:
    field(s, "quantity")["type"] = ["null", "string"]


def promote_quantity(s: dict[str, Any]) -> None:
    field(s, "quantity")["type"] = ["null", "long"]


def add_channel(s: dict[str, Any]) -> None:
    field(s, "channel")["type"][1]["symbols"].append("marketplace")


def drop_enum_default(s: dict[str, Any]) -> None:
    del field(s, "channel")["type"][1]["default"]


@pytest.mark.parametrize(
    ("edit", "level", "field_named"),
    [
        (add_required, "BACKWARD", "region"),
        (add_required, "FULL", "region"),
        (remove_required, "FORWARD", "event_id"),
        (remove_required, "FULL", "event_id"),
        (retype_quantity, "BACKWARD", "quantity"),
        (retype_quantity, "FORWARD", "quantity"),
    ],
)
def test_breaking_changes_name_the_field(edit: Callable[[dict[str, Any]], None], level: str, field_named: str) -> None:
    """Each breaking change is reported at its level, naming the field it breaks."""
    problems = incompatibilities(changed(edit), OLD, level, new="local", old="registered version 1")
    assert problems
    assert all(f"SubscriptionEvent.{field_named}" in p for p in problems), problems


@pytest.mark.parametrize(
    ("edit", "level"),
    [
        (add_optional, "FULL"),
        (add_required, "FORWARD"),  # old readers ignore a field they do not know
        (remove_required, "BACKWARD"),  # new readers ignore a field they do not know
        (promote_quantity, "BACKWARD"),  # int → long is an Avro promotion
        (add_channel, "FULL"),  # old readers map the new symbol to the enum's default
    ],
)
def test_compatible_changes_pass(edit: Callable[[dict[str, Any]], None], level: str) -> None:
    """Each compatible change is reported as no problem at its level."""
    assert incompatibilities(changed(edit), OLD, level) == []


def test_a_new_enum_symbol_breaks_old_readers_without_an_enum_default() -> None:
    """A new enum symbol breaks forward compatibility when the old enum has no default."""
    old = changed(drop_enum_default)
    new = changed(add_channel, old)
    problems = incompatibilities(new, old, "FORWARD", new="local", old="registered")
    assert problems == [
        "SubscriptionEvent.channel: enum Channel of registered lacks ['marketplace'] and has no default"
    ]


def test_level_none_accepts_anything() -> None:
    """Level NONE accepts even a retyped field."""
    assert incompatibilities(changed(retype_quantity), OLD, "NONE") == []


def test_transitive_levels_check_the_given_version() -> None:
    """A transitive level checks against the given version and finds a new required field."""
    assert incompatibilities(changed(add_required), OLD, "BACKWARD_TRANSITIVE")


def test_nested_records_and_named_references_are_followed() -> None:
    """The check follows nested records and named type references into their fields."""
    old = schema_str("account_state")

    def retype_flag(s: dict[str, Any]) -> None:
        flag = field(s, "relationship")["type"][1]
        field(flag, "active")["type"] = "string"

    problems = can_read(changed(retype_flag, old), old)
    # Flag is defined under `relationship` and referenced by name under `delegated_admin`.
    assert any(p.startswith("AccountState.relationship.active") for p in problems), problems


def test_a_renamed_record_is_reported() -> None:
    """A record renamed between versions is reported with both names."""

    def rename(s: dict[str, Any]) -> None:
        s["name"] = "SubscriptionEventV2"

    assert can_read(changed(rename), OLD) == [
        "SubscriptionEventV2: record renamed from SubscriptionEvent to SubscriptionEventV2"
    ]
