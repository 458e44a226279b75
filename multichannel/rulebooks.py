"""The two rule books, as named, versioned data: which rule functions, in which order.

`seed` is the Partner Center "multichannel support" page as written (version 2026-11.1, the default).
`current` is the same with what Partner Center changed since (version 2026-12.1): new-commerce transfers
between partners (T1, T2), Azure transfers that need a relationship first (T3), the billing transfer of a
direct Enterprise Agreement's Azure (E1, E2), the reseller's own invitation, the cancellation window and
GDAP expiry. Both books share R1-R8 and the M-rules (`multichannel.rules`); a rule of one book alone is
named in that book's list only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from multichannel import rules as r
from multichannel.model import RULEBOOK_VERSION, BillingModel, Channel
from multichannel.rules import AccountContext, RuleBookGap
from multichannel.state import Subscription, Verdict

SubscriptionRule = Callable[[AccountContext, Subscription], Verdict | None]

_ALL_CHANNELS = frozenset(Channel)
_MULTICHANNEL_CHANNELS = _ALL_CHANNELS - {Channel.CSP, Channel.SYNDICATION}
_HELD_BY_CSP_CHANNELS = frozenset({Channel.CSP, Channel.THIRD_PARTY})
_CHANNELS_OF: dict[SubscriptionRule, frozenset[Channel]] = {
    r.rule_r3_sold_by_account_partner: frozenset({Channel.CSP}),
    r.rule_r4_syndication: frozenset({Channel.SYNDICATION, Channel.THIRD_PARTY}),
    r.rule_r6_azure_from_other_csp: _HELD_BY_CSP_CHANNELS,
    r.rule_r7_license_held_by_other_csp: _HELD_BY_CSP_CHANNELS,
    r.rule_r8_usage_without_migration_path: _MULTICHANNEL_CHANNELS,
    r.rule_r9_eligible_for_relationship_request: _MULTICHANNEL_CHANNELS,
    r.rule_r10_relationship_accepted: _MULTICHANNEL_CHANNELS,
    r.rule_t1_nce_transfer: _HELD_BY_CSP_CHANNELS,
    r.rule_t2_nce_transfer_needs_relationship: _HELD_BY_CSP_CHANNELS,
    r.rule_t3_azure_transfer_needs_relationship: _HELD_BY_CSP_CHANNELS,
    r.rule_e1_ea_billing_transfer: frozenset({Channel.ENTERPRISE_AGREEMENT}),
    r.rule_e2_ea_billing_transfer_needs_relationship: frozenset({Channel.ENTERPRISE_AGREEMENT}),
    r.current_rule_r9_eligible_for_relationship_request: _MULTICHANNEL_CHANNELS,
    r.current_rule_r10_relationship_accepted: _MULTICHANNEL_CHANNELS,
}
"""The channels on which a rule can match at all (absent: every channel)."""
_BILLING_OF: dict[SubscriptionRule, BillingModel] = {
    r.rule_r6_azure_from_other_csp: BillingModel.USAGE,
    r.rule_r8_usage_without_migration_path: BillingModel.USAGE,
    r.rule_t3_azure_transfer_needs_relationship: BillingModel.USAGE,
    r.rule_e1_ea_billing_transfer: BillingModel.USAGE,
    r.rule_e2_ea_billing_transfer_needs_relationship: BillingModel.USAGE,
    r.rule_r7_license_held_by_other_csp: BillingModel.LICENSE,
    r.rule_r9_eligible_for_relationship_request: BillingModel.LICENSE,
    r.rule_r10_relationship_accepted: BillingModel.LICENSE,
    r.rule_t1_nce_transfer: BillingModel.LICENSE,
    r.rule_t2_nce_transfer_needs_relationship: BillingModel.LICENSE,
    r.current_rule_r9_eligible_for_relationship_request: BillingModel.LICENSE,
    r.current_rule_r10_relationship_accepted: BillingModel.LICENSE,
}
"""The billing model a rule can match (absent: both)."""


@dataclass(frozen=True, slots=True)
class RuleBook:
    """A named, versioned rule book: its subscription rules in precedence order (after R1 and R2, which look at
    the account alone and are the same in both books) and the timers its rules read besides term ends."""

    name: str
    version: str
    rules: tuple[SubscriptionRule, ...]
    cancellation_windows: bool
    """Its rules read the end of an NCE cancellation window: that end is a timer."""
    admin_expiry: bool
    """Delegated admin ends at its grant's `expires_at` (GDAP): the expiry is a timer."""
    rules_for: dict[tuple[str, str], tuple[SubscriptionRule, ...]] = field(init=False, repr=False, compare=False)
    """The rules that can match a (channel, billing model), keyed by the enums' raw values (an enum member's
    own hash is a Python-level call), in the book's order: skipping the impossible ones keeps the order."""

    def __post_init__(self) -> None:
        table = {
            (channel._value_, billing._value_): tuple(
                rule
                for rule in self.rules
                if channel in _CHANNELS_OF.get(rule, _ALL_CHANNELS) and _BILLING_OF.get(rule, billing) is billing
            )
            for channel in Channel
            for billing in BillingModel
        }
        object.__setattr__(self, "rules_for", table)

    def classify(self, ctx: AccountContext, sub: Subscription) -> Verdict:
        """The first matching rule's verdict, in the book's precedence order."""
        verdict = ctx.account_verdict
        if verdict is not None:
            return verdict
        p = sub.purchase
        assert p is not None
        for rule in self.rules_for[p.channel._value_, p.billing_model._value_]:
            verdict = rule(ctx, sub)
            if verdict is not None:
                return verdict
        raise RuleBookGap(f"no rule matched subscription {sub.subscription_id}")


SEED = RuleBook(
    "seed",
    RULEBOOK_VERSION,
    (
        r.rule_r3_sold_by_account_partner,
        r.rule_r4_syndication,
        r.rule_r5_ended,
        r.rule_r6_azure_from_other_csp,
        r.rule_r7_license_held_by_other_csp,
        r.rule_r8_usage_without_migration_path,
        r.rule_r9_eligible_for_relationship_request,
        r.rule_r10_relationship_accepted,
    ),
    cancellation_windows=False,
    admin_expiry=False,
)
"""The multichannel page as written: R1-R10."""

CURRENT = RuleBook(
    "current",
    "2026-12.1",
    (
        r.rule_r3_sold_by_account_partner,
        r.rule_r4_syndication,
        r.rule_r5_ended,
        r.rule_t1_nce_transfer,
        r.rule_t2_nce_transfer_needs_relationship,
        r.rule_t3_azure_transfer_needs_relationship,
        r.rule_r6_azure_from_other_csp,
        r.rule_r7_license_held_by_other_csp,  # legacy commerce only here: T1 and T2 took every NCE license
        r.rule_e1_ea_billing_transfer,
        r.rule_e2_ea_billing_transfer_needs_relationship,
        r.rule_r8_usage_without_migration_path,
        r.current_rule_r9_eligible_for_relationship_request,
        r.current_rule_r10_relationship_accepted,
    ),
    cancellation_windows=True,
    admin_expiry=True,
)
"""Partner Center as it is now: R1-R5, T1-T3, R6, R7, E1, E2, R8, and R9 and R10 with today's next actions."""

RULEBOOKS: dict[str, RuleBook] = {book.name: book for book in (SEED, CURRENT)}
"""Every rule book by name: what `MULTICHANNEL_RULEBOOK` and `--rulebook` choose from."""


def rulebook(name: str) -> RuleBook:
    """The rule book of that name; ValueError naming the books there are otherwise."""
    book = RULEBOOKS.get(name)
    if book is None:
        raise ValueError(f"unknown rule book {name!r}: choose one of {', '.join(RULEBOOKS)}")
    return book
