"""The .avsc files say what the contract says: every field, every code, documented and evolvable."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

import schemas
from schemas import (
    SCHEMA_NAMES,
    V1_DIR,
    SchemaName,
    load_dir,
    parsed_schema,
    schema_str,
    subject_for,
    v1_schema_str,
)
from schemas.compat import incompatibilities

# --- the event contract and the rule book, restated (docs/rules.md explains them) -------------------------

COMMON = {"event_type", "event_id", "occurred_at"}
SUBSCRIPTION_EVENT_FIELDS: dict[str, set[str]] = {
    "subscription_purchased": {
        "subscription_id",
        "offer_id",
        "billing_model",
        "channel",
        "seller_partner_id",
        "quantity",
        "term_start",
        "term_end",
        "commerce",
        "cancellation_allowed_until",
    },
    "subscription_cancelled": {"subscription_id"},
    "subscription_renewed": {"subscription_id", "term_end", "cancellation_allowed_until"},
    "relationship_accepted": set(),
    "relationship_ended": set(),
    "delegated_admin_granted": {"expires_at"},
    "delegated_admin_revoked": set(),
}
PARTNER_EVENT_FIELDS = {"partner_id", "program", "indirect_provider_ids", "azure_expert_msp"}
CONTRACT_1_1_FIELDS: dict[SchemaName, tuple[str, ...]] = {
    "subscription_event": ("commerce", "cancellation_allowed_until", "expires_at"),
    "partner_event": ("azure_expert_msp",),
}
"""The fields contract 1.1 adds, in the order the schemas append them to version 1's."""
DECISION_FIELDS = {
    "partner_id",
    "customer_id",
    "subscription_id",
    "decision",
    "reason",
    "rule",
    "next_actions",
    "blocked_until",
    "relationship_via_partner_ids",
    "decided_at",
    "caused_by_event_id",
    "rulebook_version",
}
STATUS_FIELDS = {
    "partner_id",
    "customer_id",
    "status",
    "decision_counts",
    "decided_at",
    "caused_by_event_id",
    "rulebook_version",
}
ENUMS: dict[str, set[str]] = {
    "BillingModel": {"license", "usage"},
    "Commerce": {"legacy", "nce"},
    "Channel": {"microsoft_direct", "advisor", "open", "enterprise_agreement", "csp", "third_party", "syndication"},
    "PartnerProgram": {
        "csp_direct",
        "csp_indirect_provider",
        "csp_indirect_reseller",
        "advisor",
        "syndication",
        "none",
    },
    "Decision": {
        "ELIGIBLE_FOR_RELATIONSHIP_REQUEST",
        "BLOCKED_UNTIL_TERM_END",
        "MIGRATION_REQUIRED",
        "CSP_SWITCH_PERMITTED",
        "ALREADY_MANAGED",
        "RESALE_NOT_PERMITTED",
        "NOT_APPLICABLE",
    },
    "Reason": {
        "CUSTOMER_IS_CSP_PARTNER",
        "PARTNER_NOT_IN_CSP",
        "SOLD_BY_ACCOUNT_PARTNER",
        "SYNDICATION_CHANNEL",
        "SUBSCRIPTION_CANCELLED",
        "TERM_ENDED",
        "AZURE_FROM_OTHER_CSP_PARTNER",
        "LICENSE_HELD_BY_OTHER_CSP_PARTNER",
        "NO_CSP_MIGRATION_PATH",
        "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL",
        "PURCHASED_FROM_PARTNER_AS_ADVISOR",
        "PURCHASED_FROM_NON_CSP_THIRD_PARTY",
        "RESELLER_WITHOUT_INDIRECT_PROVIDER",
        "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END",
        "NCE_TRANSFER_AVAILABLE",
        "EA_BILLING_TRANSFER_AVAILABLE",
        "TRANSFER_NEEDS_RELATIONSHIP",
    },
    "Rule": {f"R{i}" for i in range(1, 11)} | {"T1", "T2", "T3", "E1", "E2"},
    "NextAction": {
        "OFFER_CSP_SUBSCRIPTION",
        "REQUEST_AZURE_PARTNER_SWITCH",
        "WAIT_FOR_TERM_END_OR_CANCELLATION",
        "CREATE_CSP_AZURE_SUBSCRIPTION",
        "PORT_DATA_AND_SETTINGS",
        "CUSTOMER_CANCELS_OLD_SUBSCRIPTION",
        "CHECK_SERVICE_AVAILABILITY_IN_CSP",
        "SEND_RELATIONSHIP_REQUEST",
        "OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER",
        "SEND_PROVIDER_INVITATION_TO_CUSTOMER",
        "REQUEST_DELEGATED_ADMIN_FOR_RESELLER",
        "SUPPORT_UNDER_RELATIONSHIP",
        "LINK_INDIRECT_PROVIDER",
        "REQUEST_PARTNER_TRANSFER",
        "REQUEST_EA_BILLING_TRANSFER",
        "SEND_RESELLER_INVITATION_TO_CUSTOMER",
        "WAIT_FOR_TERM_END",
    },
    "Status": {"MULTICHANNEL", "SINGLE_CHANNEL", "NOT_ELIGIBLE"},
}
TIMESTAMPS = {"occurred_at", "decided_at", "expires_at"}
DATES = {"term_start", "term_end", "blocked_until", "cancellation_allowed_until"}
# The changelog shape agreed with the core's multichannel.codec (field names exactly).
CHANGELOG_SHAPE: dict[str, Any] = {
    "partner_id": None,
    "customer_id": None,
    "relationship": {"active": None, "occurred_at": None, "event_id": None},
    "delegated_admin": {"active": None, "occurred_at": None, "event_id": None},
    "subscriptions": {
        "subscription_id": None,
        "purchase": {
            "event_id": None,
            "occurred_at": None,
            "offer_id": None,
            "billing_model": None,
            "channel": None,
            "seller_partner_id": None,
            "quantity": None,
            "term_start": None,
            "term_end": None,
        },
        "cancellation": {"event_id": None, "occurred_at": None},
        "renewal": {"event_id": None, "occurred_at": None, "term_end": None},
        "decision": {
            "decision": None,
            "reason": None,
            "rule": None,
            "next_actions": None,
            "blocked_until": None,
            "relationship_via_partner_ids": None,
        },
    },
    "status": {"status": None, "decision_counts": None},
    "recent_event_ids": None,
    "evaluated_at": None,
}


# --- walking the raw JSON ---------------------------------------------------------------------------------


def raw(name: SchemaName) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_str(name))
    return loaded


def named_types(schema: Any) -> Iterator[dict[str, Any]]:
    """Every record and enum defined inside `schema`, depth first."""
    if isinstance(schema, list):
        for branch in schema:
            yield from named_types(branch)
    elif isinstance(schema, dict):
        kind = schema["type"]
        if kind in ("record", "enum"):
            yield schema
        if kind == "record":
            for field in schema["fields"]:
                yield from named_types(field["type"])
        elif kind == "array":
            yield from named_types(schema["items"])
        elif kind == "map":
            yield from named_types(schema["values"])
        elif isinstance(kind, dict | list):
            yield from named_types(kind)


def all_fields() -> Iterator[tuple[str, dict[str, Any]]]:
    for name in SCHEMA_NAMES:
        for t in named_types(raw(name)):
            if t["type"] == "record":
                for field in t["fields"]:
                    yield f"{name}:{t['name']}.{field['name']}", field


def field_types(name: SchemaName) -> dict[str, Any]:
    return {f["name"]: f["type"] for f in raw(name)["fields"]}


def enums() -> dict[str, dict[str, Any]]:
    return {t["name"]: t for name in SCHEMA_NAMES for t in named_types(raw(name)) if t["type"] == "enum"}


# --- tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_parses_and_is_namespaced(name: SchemaName) -> None:
    """Each schema parses with fastavro and is a record in the com.multichannel.v1 namespace."""
    parsed = fastavro.parse_schema(json.loads(schema_str(name)))
    assert isinstance(parsed, dict)
    assert raw(name)["namespace"].startswith("com.multichannel.v1")
    assert raw(name)["type"] == "record"


def test_the_files_are_exactly_the_named_schemas() -> None:
    """The schema directory holds exactly the named schemas, no more and no fewer."""
    assert sorted(p.stem for p in schemas.SCHEMAS_DIR.glob("*.avsc")) == sorted(SCHEMA_NAMES)


def test_schemas_are_loaded_and_parsed_once() -> None:
    """A schema is read and parsed once and then shared."""
    assert parsed_schema("subscription_event") is parsed_schema("subscription_event")
    assert schema_str("customer_status") is schema_str("customer_status")


def test_every_record_enum_and_field_has_a_doc() -> None:
    """Every record, enum and field of every schema has a doc."""
    undocumented = [
        t["name"] for name in SCHEMA_NAMES for t in named_types(raw(name)) if not str(t.get("doc", "")).strip()
    ]
    undocumented += [where for where, field in all_fields() if not str(field.get("doc", "")).strip()]
    assert undocumented == []


def test_every_enum_has_a_default_symbol_for_values_added_later() -> None:
    """Every enum has the default symbol UNKNOWN, so old readers survive new symbols."""
    for name, enum in enums().items():
        assert enum.get("default") == "UNKNOWN", name
        assert "UNKNOWN" in enum["symbols"], name


def test_enum_symbols_are_the_contract_codes() -> None:
    """The enums' symbols are exactly the contract's codes, besides UNKNOWN."""
    found = {name: set(e["symbols"]) - {"UNKNOWN"} for name, e in enums().items()}
    assert found == ENUMS


def test_optional_fields_are_null_first_with_null_default() -> None:
    """Every optional field is a union with null first and a null default."""
    for where, field in all_fields():
        if isinstance(field["type"], list) and "null" in field["type"]:
            assert field["type"][0] == "null", where
            assert "default" in field, where
            assert field["default"] is None, where


def test_timestamps_and_dates_use_logical_types() -> None:
    """Timestamps are timestamp-millis and dates are date logical types."""

    def logical(t: Any) -> str | None:
        if isinstance(t, list):
            return next((logical(b) for b in t if b != "null"), None)
        return t.get("logicalType") if isinstance(t, dict) else None

    seen = set()
    for where, field in all_fields():
        if field["name"] in TIMESTAMPS:
            assert logical(field["type"]) == "timestamp-millis", where
            seen.add(field["name"])
        if field["name"] in DATES:
            assert logical(field["type"]) == "date", where
            seen.add(field["name"])
    assert seen == TIMESTAMPS | DATES


def test_subscription_event_has_every_contract_field_and_only_those() -> None:
    """The subscription envelope has every contract field and only those, per-type fields optional."""
    types = field_types("subscription_event")
    every = COMMON | {"partner_id", "customer_id"} | set().union(*SUBSCRIPTION_EVENT_FIELDS.values())
    assert set(types) == every
    required = {n for n, f in ((f["name"], f) for f in raw("subscription_event")["fields"]) if "default" not in f}
    assert required == COMMON | {"partner_id", "customer_id"}, "per-type fields must be optional in the envelope"
    assert types["event_type"] == "string", "a string, so that unknown types reach UNKNOWN_EVENT_TYPE by name"


def test_partner_event_has_every_contract_field() -> None:
    """The partner event schema has exactly the contract's fields, with a string event_type."""
    types = field_types("partner_event")
    assert set(types) == COMMON | PARTNER_EVENT_FIELDS
    assert types["event_type"] == "string"


def test_output_records_have_every_contract_field() -> None:
    """Decision and status schemas have exactly the contract's fields, decision_counts a map of int."""
    assert set(field_types("subscription_decision")) == DECISION_FIELDS
    assert set(field_types("customer_status")) == STATUS_FIELDS
    assert field_types("customer_status")["decision_counts"] == {"type": "map", "values": "int"}


def test_changelog_has_the_agreed_shape() -> None:
    """The account-state schema has the agreed shape of nested records and arrays."""
    named: dict[str, Any] = {}
    parsed = fastavro.parse_schema(raw("account_state"), named_schemas=named)

    def shape(schema: Any) -> Any:
        if isinstance(schema, str) and schema in named:  # a reference to a record defined earlier
            return shape(named[schema])
        if isinstance(schema, list):
            return next((shape(b) for b in schema if b != "null"), None)
        if isinstance(schema, dict) and schema["type"] == "record":
            return {f["name"]: shape(f["type"]) for f in schema["fields"]}
        if isinstance(schema, dict) and schema["type"] == "array":
            return shape(schema["items"])
        return None

    assert shape(parsed) == CHANGELOG_SHAPE


def test_subject_follows_the_topic_name_strategy() -> None:
    """A topic's subject is its name with `-value`."""
    assert subject_for("billing.subscription-events.v1") == "billing.subscription-events.v1-value"


def test_load_dir_reads_a_copy(tmp_path: Path) -> None:
    """A copy of the schema directory loads to the same schemas."""
    for name in SCHEMA_NAMES:
        shutil.copy(schemas.SCHEMAS_DIR / f"{name}.avsc", tmp_path)
    assert load_dir(tmp_path) == {name: schema_str(name) for name in SCHEMA_NAMES}


def test_load_dir_names_a_broken_file(tmp_path: Path) -> None:
    """A schema file that is not JSON is reported by its file name."""
    for name in SCHEMA_NAMES:
        shutil.copy(schemas.SCHEMAS_DIR / f"{name}.avsc", tmp_path)
    (tmp_path / "customer_status.avsc").write_text("{not json")
    with pytest.raises(ValueError, match=r"customer_status\.avsc"):
        load_dir(tmp_path)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_schema_is_fully_compatible_with_itself(name: SchemaName) -> None:
    """Each schema is FULL-compatible with itself."""
    assert incompatibilities(schema_str(name), schema_str(name), "FULL") == []


def test_enum_symbols_match_the_core_enums() -> None:
    """The schemas and the core's enums are two statements of the same codes: they must not drift apart."""
    model = pytest.importorskip("multichannel.model")
    core = {
        "BillingModel": model.BillingModel,
        "Commerce": model.Commerce,
        "Channel": model.Channel,
        "PartnerProgram": model.Program,
        "Decision": model.Decision,
        "Reason": model.Reason,
        "Rule": model.Rule,
        "NextAction": model.NextAction,
        "Status": model.CustomerStatus,
    }
    found = {name: set(e["symbols"]) - {"UNKNOWN"} for name, e in enums().items()}
    assert found == {name: {m.value for m in enum} for name, enum in core.items()}
    assert {m.value for m in model.EventType} == set(SUBSCRIPTION_EVENT_FIELDS) | {"partner_program_changed"}


# --- version 1, kept whole, and what contract 1.1 adds to it -------------------------------------------------


def v1_raw(name: SchemaName) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(v1_schema_str(name))
    return loaded


def test_version_1_is_kept_whole_and_without_contract_1_1() -> None:
    """schemas/v1 holds every named schema, as contract 1 had them: none of 1.1's fields or codes."""
    assert sorted(p.stem for p in V1_DIR.glob("*.avsc")) == sorted(SCHEMA_NAMES)
    assert load_dir(V1_DIR) == {name: v1_schema_str(name) for name in SCHEMA_NAMES}
    for name, added in CONTRACT_1_1_FIELDS.items():
        assert not set(added) & {f["name"] for f in v1_raw(name)["fields"]}, name
    v1_enums = {t["name"]: t for n in SCHEMA_NAMES for t in named_types(v1_raw(n)) if t["type"] == "enum"}
    assert "T1" not in v1_enums["Rule"]["symbols"] and "WAIT_FOR_TERM_END" not in v1_enums["NextAction"]["symbols"]
    assert "Commerce" not in v1_enums


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_contract_1_1_appends_optional_fields_to_version_1(name: SchemaName) -> None:
    """Each schema is version 1's fields, of unchanged types and in order (docs may say more), then contract 1.1's,
    each with a default."""
    old, new = schemas.parse(v1_schema_str(name))["fields"], schemas.parse(schema_str(name))["fields"]
    added = CONTRACT_1_1_FIELDS.get(name, ())
    assert [f["name"] for f in new] == [f["name"] for f in old] + list(added)
    for before, after in zip(old, new, strict=False):
        if before["name"] in ("decision", "reason", "rule", "next_actions"):
            continue  # enums that gain symbols: the next test
        assert (after["type"], after.get("default")) == (before["type"], before.get("default")), before["name"]
    assert all("default" in f for f in new[len(old) :])


def test_contract_1_1_appends_enum_symbols_at_the_end() -> None:
    """Every enum of version 1 keeps its symbols at their indexes; contract 1.1's come after them."""
    v1_enums = {t["name"]: t for n in SCHEMA_NAMES for t in named_types(v1_raw(n)) if t["type"] == "enum"}
    for enum_name, old in v1_enums.items():
        symbols = enums()[enum_name]["symbols"]
        assert symbols[: len(old["symbols"])] == old["symbols"], enum_name
        assert enums()[enum_name]["default"] == old["default"] == "UNKNOWN"
    grown = {n for n, old in v1_enums.items() if enums()[n]["symbols"] != old["symbols"]}
    assert grown == {"Reason", "Rule", "NextAction"}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_each_schema_is_fully_compatible_with_version_1(name: SchemaName) -> None:
    """FULL: each schema reads what version 1 wrote, and version 1 reads what it writes."""
    assert incompatibilities(schema_str(name), v1_schema_str(name), "FULL") == []


def test_defaults_that_are_not_null_are_the_cores_defaults() -> None:
    """commerce and azure_expert_msp are not unions with null: their schema defaults are the contract's, which
    the core's events default to as well."""
    model = pytest.importorskip("multichannel.model")
    commerce = next(f for f in raw("subscription_event")["fields"] if f["name"] == "commerce")
    expert = next(f for f in raw("partner_event")["fields"] if f["name"] == "azure_expert_msp")
    assert commerce["type"]["type"] == "enum" and commerce["default"] == "legacy"
    assert expert["type"] == "boolean" and expert["default"] is False
    fields = {f.name: f.default for f in dataclasses.fields(model.SubscriptionPurchased)}
    assert fields["commerce"] == model.Commerce.LEGACY == commerce["default"]
    fields = {f.name: f.default for f in dataclasses.fields(model.PartnerProgramChanged)}
    assert fields["azure_expert_msp"] is False
