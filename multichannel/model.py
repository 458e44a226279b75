"""The vocabulary of the rule book and the contract: enums, input events, account keys.

Events are cheap slotted dataclasses, built once per input record by `multichannel.parse` and never
changed after (not frozen: a frozen dataclass's init makes an `object.__setattr__` call per field
instead of a plain slot store); timestamps are UTC-aware datetimes truncated to milliseconds, as Avro's
`timestamp-millis` carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

RULEBOOK_VERSION = "2026-11.1"
"""The version of the `seed` rule book (the default); `multichannel.rulebooks` names every book."""

AccountKey = tuple[str, str]
"""(partner_id, customer_id): one CSP partner's view of one customer."""


class EventType(StrEnum):
    SUBSCRIPTION_PURCHASED = "subscription_purchased"
    SUBSCRIPTION_CANCELLED = "subscription_cancelled"
    SUBSCRIPTION_RENEWED = "subscription_renewed"
    RELATIONSHIP_ACCEPTED = "relationship_accepted"
    RELATIONSHIP_ENDED = "relationship_ended"
    DELEGATED_ADMIN_GRANTED = "delegated_admin_granted"
    DELEGATED_ADMIN_REVOKED = "delegated_admin_revoked"
    PARTNER_PROGRAM_CHANGED = "partner_program_changed"


class BillingModel(StrEnum):
    LICENSE = "license"
    USAGE = "usage"


class Commerce(StrEnum):
    """The commerce platform of a license-based subscription (contract 1.1; `legacy` when absent)."""

    LEGACY = "legacy"
    NCE = "nce"


class Channel(StrEnum):
    MICROSOFT_DIRECT = "microsoft_direct"
    ADVISOR = "advisor"
    OPEN = "open"
    ENTERPRISE_AGREEMENT = "enterprise_agreement"
    CSP = "csp"
    THIRD_PARTY = "third_party"
    SYNDICATION = "syndication"


class Program(StrEnum):
    CSP_DIRECT = "csp_direct"
    CSP_INDIRECT_PROVIDER = "csp_indirect_provider"
    CSP_INDIRECT_RESELLER = "csp_indirect_reseller"
    ADVISOR = "advisor"
    SYNDICATION = "syndication"
    NONE = "none"


CSP_PROGRAMS = frozenset({Program.CSP_DIRECT, Program.CSP_INDIRECT_PROVIDER, Program.CSP_INDIRECT_RESELLER})


class Decision(StrEnum):
    ELIGIBLE_FOR_RELATIONSHIP_REQUEST = "ELIGIBLE_FOR_RELATIONSHIP_REQUEST"
    BLOCKED_UNTIL_TERM_END = "BLOCKED_UNTIL_TERM_END"
    MIGRATION_REQUIRED = "MIGRATION_REQUIRED"
    CSP_SWITCH_PERMITTED = "CSP_SWITCH_PERMITTED"
    ALREADY_MANAGED = "ALREADY_MANAGED"
    RESALE_NOT_PERMITTED = "RESALE_NOT_PERMITTED"
    NOT_APPLICABLE = "NOT_APPLICABLE"


class Reason(StrEnum):
    CUSTOMER_IS_CSP_PARTNER = "CUSTOMER_IS_CSP_PARTNER"
    PARTNER_NOT_IN_CSP = "PARTNER_NOT_IN_CSP"
    SOLD_BY_ACCOUNT_PARTNER = "SOLD_BY_ACCOUNT_PARTNER"
    SYNDICATION_CHANNEL = "SYNDICATION_CHANNEL"
    SUBSCRIPTION_CANCELLED = "SUBSCRIPTION_CANCELLED"
    TERM_ENDED = "TERM_ENDED"
    AZURE_FROM_OTHER_CSP_PARTNER = "AZURE_FROM_OTHER_CSP_PARTNER"
    LICENSE_HELD_BY_OTHER_CSP_PARTNER = "LICENSE_HELD_BY_OTHER_CSP_PARTNER"
    NO_CSP_MIGRATION_PATH = "NO_CSP_MIGRATION_PATH"
    LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END = "LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END"
    PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL = "PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL"
    PURCHASED_FROM_PARTNER_AS_ADVISOR = "PURCHASED_FROM_PARTNER_AS_ADVISOR"
    PURCHASED_FROM_NON_CSP_THIRD_PARTY = "PURCHASED_FROM_NON_CSP_THIRD_PARTY"
    RESELLER_WITHOUT_INDIRECT_PROVIDER = "RESELLER_WITHOUT_INDIRECT_PROVIDER"
    NCE_TRANSFER_AVAILABLE = "NCE_TRANSFER_AVAILABLE"
    EA_BILLING_TRANSFER_AVAILABLE = "EA_BILLING_TRANSFER_AVAILABLE"
    TRANSFER_NEEDS_RELATIONSHIP = "TRANSFER_NEEDS_RELATIONSHIP"


class Rule(StrEnum):
    R1 = "R1"
    R2 = "R2"
    R3 = "R3"
    R4 = "R4"
    R5 = "R5"
    R6 = "R6"
    R7 = "R7"
    R8 = "R8"
    R9 = "R9"
    R10 = "R10"
    T1 = "T1"
    T2 = "T2"
    T3 = "T3"
    E1 = "E1"
    E2 = "E2"


class NextAction(StrEnum):
    OFFER_CSP_SUBSCRIPTION = "OFFER_CSP_SUBSCRIPTION"
    REQUEST_AZURE_PARTNER_SWITCH = "REQUEST_AZURE_PARTNER_SWITCH"
    WAIT_FOR_TERM_END_OR_CANCELLATION = "WAIT_FOR_TERM_END_OR_CANCELLATION"
    CREATE_CSP_AZURE_SUBSCRIPTION = "CREATE_CSP_AZURE_SUBSCRIPTION"
    PORT_DATA_AND_SETTINGS = "PORT_DATA_AND_SETTINGS"
    CUSTOMER_CANCELS_OLD_SUBSCRIPTION = "CUSTOMER_CANCELS_OLD_SUBSCRIPTION"
    CHECK_SERVICE_AVAILABILITY_IN_CSP = "CHECK_SERVICE_AVAILABILITY_IN_CSP"
    SEND_RELATIONSHIP_REQUEST = "SEND_RELATIONSHIP_REQUEST"
    OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER = "OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER"
    SEND_PROVIDER_INVITATION_TO_CUSTOMER = "SEND_PROVIDER_INVITATION_TO_CUSTOMER"
    REQUEST_DELEGATED_ADMIN_FOR_RESELLER = "REQUEST_DELEGATED_ADMIN_FOR_RESELLER"
    SUPPORT_UNDER_RELATIONSHIP = "SUPPORT_UNDER_RELATIONSHIP"
    LINK_INDIRECT_PROVIDER = "LINK_INDIRECT_PROVIDER"
    REQUEST_PARTNER_TRANSFER = "REQUEST_PARTNER_TRANSFER"
    REQUEST_EA_BILLING_TRANSFER = "REQUEST_EA_BILLING_TRANSFER"
    SEND_RESELLER_INVITATION_TO_CUSTOMER = "SEND_RESELLER_INVITATION_TO_CUSTOMER"
    WAIT_FOR_TERM_END = "WAIT_FOR_TERM_END"


class CustomerStatus(StrEnum):
    MULTICHANNEL = "MULTICHANNEL"
    SINGLE_CHANNEL = "SINGLE_CHANNEL"
    NOT_ELIGIBLE = "NOT_ELIGIBLE"


OrderKey = tuple[datetime, str]
"""(occurred_at, event_id): "later" in the rule book; equal times are ordered by event id."""


@dataclass(slots=True)
class SubscriptionPurchased:
    event_id: str
    occurred_at: datetime
    partner_id: str
    customer_id: str
    subscription_id: str
    offer_id: str
    billing_model: BillingModel
    channel: Channel
    seller_partner_id: str | None
    quantity: int | None
    term_start: date | None
    term_end: date | None
    commerce: Commerce = Commerce.LEGACY
    """Contract 1.1: `legacy` when absent, and for usage (ignored there)."""
    cancellation_allowed_until: date | None = None
    """Contract 1.1: the last day of the NCE cancellation window of the purchased term (None for usage)."""
    event_type: EventType = EventType.SUBSCRIPTION_PURCHASED


@dataclass(slots=True)
class SubscriptionCancelled:
    event_id: str
    occurred_at: datetime
    partner_id: str
    customer_id: str
    subscription_id: str
    event_type: EventType = EventType.SUBSCRIPTION_CANCELLED


@dataclass(slots=True)
class SubscriptionRenewed:
    event_id: str
    occurred_at: datetime
    partner_id: str
    customer_id: str
    subscription_id: str
    term_end: date
    cancellation_allowed_until: date | None = None
    """Contract 1.1: the new term's cancellation window (None: no window in the new term)."""
    event_type: EventType = EventType.SUBSCRIPTION_RENEWED


@dataclass(slots=True)
class RelationshipAccepted:
    event_id: str
    occurred_at: datetime
    partner_id: str
    customer_id: str
    event_type: EventType = EventType.RELATIONSHIP_ACCEPTED


@dataclass(slots=True)
class RelationshipEnded:
    event_id: str
    occurred_at: datetime
    partner_id: str
    customer_id: str
    event_type: EventType = EventType.RELATIONSHIP_ENDED


@dataclass(slots=True)
class DelegatedAdminGranted:
    event_id: str
    occurred_at: datetime
    partner_id: str
    customer_id: str
    expires_at: datetime | None = None
    """Contract 1.1: the end of the GDAP relationship (None: no end)."""
    event_type: EventType = EventType.DELEGATED_ADMIN_GRANTED


@dataclass(slots=True)
class DelegatedAdminRevoked:
    event_id: str
    occurred_at: datetime
    partner_id: str
    customer_id: str
    event_type: EventType = EventType.DELEGATED_ADMIN_REVOKED


@dataclass(slots=True)
class PartnerProgramChanged:
    event_id: str
    occurred_at: datetime
    partner_id: str
    program: Program
    indirect_provider_ids: tuple[str, ...]
    azure_expert_msp: bool = False
    """Contract 1.1: a direct-bill partner certified as Azure Expert MSP (False when absent)."""
    event_type: EventType = EventType.PARTNER_PROGRAM_CHANGED


SubscriptionEvent = SubscriptionPurchased | SubscriptionCancelled | SubscriptionRenewed
RelationshipEvent = RelationshipAccepted | RelationshipEnded | DelegatedAdminGranted | DelegatedAdminRevoked
AccountEvent = SubscriptionEvent | RelationshipEvent
Event = AccountEvent | PartnerProgramChanged
