"""The rule books as code: one function per rule; `multichannel.rulebooks` puts them in each book's order.

Each rule function returns a `Verdict` when it matches and None otherwise; a book's `classify` returns
the first match. R1 and R2 look at the account alone and are worked out once per account context; the
others look at the subscription. The M-rules decide whether a subscription is *multichannel* and with
which reason. Verdicts that depend on nothing but the rule are built once.

The functions come in three groups: the rules both books share (R1-R8 and the M-rules), the rules of
the `seed` book alone (its R9 and R10), and the rules of the `current` book alone (T1-T3, E1, E2, and
its R9 and R10, whose next actions follow Partner Center as it is now).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from multichannel.model import (
    BillingModel,
    Channel,
    Commerce,
    CustomerStatus,
    Decision,
    NextAction,
    Program,
    Reason,
    Rule,
    SubscriptionPurchased,
)
from multichannel.partners import PartnerTable
from multichannel.state import Subscription, Verdict

A = NextAction

# Enum members bound once as module constants: reading `Channel.CSP` goes through the enum class's
# attribute lookup, slower than a module global, and the rules read them for every subscription they
# classify.
LICENSE, USAGE = BillingModel.LICENSE, BillingModel.USAGE
MICROSOFT_DIRECT, OPEN, ENTERPRISE_AGREEMENT = Channel.MICROSOFT_DIRECT, Channel.OPEN, Channel.ENTERPRISE_AGREEMENT
ADVISOR_CHANNEL, CSP_CHANNEL, THIRD_PARTY = Channel.ADVISOR, Channel.CSP, Channel.THIRD_PARTY
SYNDICATION_CHANNEL = Channel.SYNDICATION
SYNDICATION_PROGRAM, RESELLER = Program.SYNDICATION, Program.CSP_INDIRECT_RESELLER
CSP_DIRECT = Program.CSP_DIRECT
NCE = Commerce.NCE
ELIGIBLE, BLOCKED = Decision.ELIGIBLE_FOR_RELATIONSHIP_REQUEST, Decision.BLOCKED_UNTIL_TERM_END
_R7, _R9, _R10 = Rule.R7, Rule.R9, Rule.R10
_R7_REASON = Reason.LICENSE_HELD_BY_OTHER_CSP_PARTNER
_R10_REASON = Reason.LICENSE_NOT_SWITCHABLE_BEFORE_TERM_END
_NO_PROVIDER = Reason.RESELLER_WITHOUT_INDIRECT_PROVIDER

V_R1 = Verdict(Decision.RESALE_NOT_PERMITTED, Reason.CUSTOMER_IS_CSP_PARTNER, Rule.R1, (), None, ())
V_R2 = Verdict(Decision.NOT_APPLICABLE, Reason.PARTNER_NOT_IN_CSP, Rule.R2, (), None, ())
V_R3 = Verdict(Decision.ALREADY_MANAGED, Reason.SOLD_BY_ACCOUNT_PARTNER, Rule.R3, (), None, ())
V_R4 = Verdict(Decision.NOT_APPLICABLE, Reason.SYNDICATION_CHANNEL, Rule.R4, (), None, ())
V_R5_CANCELLED = Verdict(
    Decision.CSP_SWITCH_PERMITTED, Reason.SUBSCRIPTION_CANCELLED, Rule.R5, (A.OFFER_CSP_SUBSCRIPTION,), None, ()
)
V_R5_TERM_ENDED = Verdict(
    Decision.CSP_SWITCH_PERMITTED, Reason.TERM_ENDED, Rule.R5, (A.OFFER_CSP_SUBSCRIPTION,), None, ()
)
V_R6 = Verdict(
    Decision.CSP_SWITCH_PERMITTED,
    Reason.AZURE_FROM_OTHER_CSP_PARTNER,
    Rule.R6,
    (A.REQUEST_AZURE_PARTNER_SWITCH,),
    None,
    (),
)
V_R8 = Verdict(
    Decision.MIGRATION_REQUIRED,
    Reason.NO_CSP_MIGRATION_PATH,
    Rule.R8,
    (
        A.CREATE_CSP_AZURE_SUBSCRIPTION,
        A.PORT_DATA_AND_SETTINGS,
        A.CUSTOMER_CANCELS_OLD_SUBSCRIPTION,
        A.CHECK_SERVICE_AVAILABILITY_IN_CSP,
    ),
    None,
    (),
)
R7_ACTIONS = (A.WAIT_FOR_TERM_END_OR_CANCELLATION,)
R9_DIRECT_ACTIONS = (A.SEND_RELATIONSHIP_REQUEST,)
R9_RESELLER_ACTIONS = (A.OBTAIN_INVITATION_FROM_INDIRECT_PROVIDER, A.SEND_PROVIDER_INVITATION_TO_CUSTOMER)
R9_NO_PROVIDER_ACTIONS = (A.LINK_INDIRECT_PROVIDER,)
R10_ACTIONS = (A.SUPPORT_UNDER_RELATIONSHIP, A.WAIT_FOR_TERM_END_OR_CANCELLATION)
DELEGATED_ADMIN_ACTION = (A.REQUEST_DELEGATED_ADMIN_FOR_RESELLER,)


@dataclass(slots=True)
class AccountContext:
    """What the rules need to know about the account around a subscription. `account_verdict` is what
    the account-level rules (R1, R2: they look at the account alone) say, worked out once when the
    context is made rather than for every subscription."""

    partner_id: str
    partner_program: Program
    partner_in_csp: bool
    customer_in_csp: bool
    providers: tuple[str, ...]
    relationship: bool
    delegated_admin: bool
    clock: datetime
    partners: PartnerTable
    partner_expert_msp: bool = False
    """The account partner is an Azure Expert MSP (E1, E2 of `current`)."""
    account_verdict: Verdict | None = None

    def __post_init__(self) -> None:
        self.account_verdict = account_verdict(self)


# ---------------------------------------------------------------- the rules both books share


def _other_csp_seller(ctx: AccountContext, p: SubscriptionPurchased) -> bool:
    """Channel `csp` (seller not P, R3 came first), or `third_party` whose seller is in CSP."""
    if p.channel is CSP_CHANNEL:
        return p.seller_partner_id != ctx.partner_id
    return p.channel is THIRD_PARTY and ctx.partners.in_csp(p.seller_partner_id)


def rule_r1_customer_is_csp_partner(ctx: AccountContext) -> Verdict | None:
    return V_R1 if ctx.customer_in_csp else None


def rule_r2_partner_not_in_csp(ctx: AccountContext) -> Verdict | None:
    return None if ctx.partner_in_csp else V_R2


ACCOUNT_RULES: tuple[Callable[[AccountContext], Verdict | None], ...] = (
    rule_r1_customer_is_csp_partner,
    rule_r2_partner_not_in_csp,
)
"""R1 and R2, which come first in the book's order and look at the account alone."""


def account_verdict(ctx: AccountContext) -> Verdict | None:
    """The verdict of the first account-level rule that holds (for every subscription of the account)."""
    for rule in ACCOUNT_RULES:
        verdict = rule(ctx)
        if verdict is not None:
            return verdict
    return None


def rule_r3_sold_by_account_partner(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    return V_R3 if p.channel is CSP_CHANNEL and p.seller_partner_id == ctx.partner_id else None


def rule_r4_syndication(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.channel is SYNDICATION_CHANNEL:
        return V_R4
    if p.channel is THIRD_PARTY and ctx.partners.program(p.seller_partner_id) is SYNDICATION_PROGRAM:
        return V_R4
    return None


def rule_r5_ended(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    if sub.cancellation is not None:
        return V_R5_CANCELLED
    deadline = sub.deadline  # 00:00 UTC of the term end in force (None for usage)
    if deadline is not None and ctx.clock >= deadline:
        return V_R5_TERM_ENDED
    return None


def rule_r6_azure_from_other_csp(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is USAGE and _other_csp_seller(ctx, p):
        return V_R6
    return None


def rule_r7_license_held_by_other_csp(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is LICENSE and _other_csp_seller(ctx, p):
        return Verdict(BLOCKED, _R7_REASON, _R7, R7_ACTIONS, sub.term_end, ())
    return None


def rule_m1_microsoft_or_volume(ctx: AccountContext, p: SubscriptionPurchased) -> bool:
    c = p.channel
    if c is MICROSOFT_DIRECT or c is OPEN or c is ENTERPRISE_AGREEMENT:
        return True
    return c is ADVISOR_CHANNEL and p.seller_partner_id != ctx.partner_id


def rule_m2_partner_as_advisor(ctx: AccountContext, p: SubscriptionPurchased) -> bool:
    return p.channel is ADVISOR_CHANNEL and p.seller_partner_id == ctx.partner_id and ctx.partner_in_csp


def rule_m3_non_csp_third_party(ctx: AccountContext, p: SubscriptionPurchased) -> bool:
    if p.channel is not THIRD_PARTY:
        return False
    partners = ctx.partners
    return not partners.in_csp(p.seller_partner_id) and partners.program(p.seller_partner_id) is not SYNDICATION_PROGRAM


M_RULES: tuple[tuple[Callable[[AccountContext, SubscriptionPurchased], bool], Reason], ...] = (
    (rule_m1_microsoft_or_volume, Reason.PURCHASED_FROM_MICROSOFT_OR_VOLUME_CHANNEL),
    (rule_m2_partner_as_advisor, Reason.PURCHASED_FROM_PARTNER_AS_ADVISOR),
    (rule_m3_non_csp_third_party, Reason.PURCHASED_FROM_NON_CSP_THIRD_PARTY),
)


def multichannel_reason(ctx: AccountContext, p: SubscriptionPurchased) -> Reason | None:
    """The reason of the first M-rule that holds, or None when the subscription is not multichannel."""
    for rule, reason in M_RULES:
        if rule(ctx, p):
            return reason
    return None


def rule_r8_usage_without_migration_path(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is USAGE and multichannel_reason(ctx, p) is not None:
        return V_R8
    return None


# ---------------------------------------------------------------- the `seed` book alone


def rule_r9_eligible_for_relationship_request(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is not LICENSE or ctx.relationship:
        return None
    reason = multichannel_reason(ctx, p)
    if reason is None:
        return None
    end = sub.term_end
    if ctx.partner_program is not RESELLER:
        return Verdict(ELIGIBLE, reason, _R9, R9_DIRECT_ACTIONS, end, ())
    if not ctx.providers:
        return Verdict(ELIGIBLE, _NO_PROVIDER, _R9, R9_NO_PROVIDER_ACTIONS, end, ())
    actions = R9_RESELLER_ACTIONS if ctx.delegated_admin else R9_RESELLER_ACTIONS + DELEGATED_ADMIN_ACTION
    return Verdict(ELIGIBLE, reason, _R9, actions, end, ctx.providers)


def rule_r10_relationship_accepted(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is not LICENSE or not ctx.relationship:
        return None
    if multichannel_reason(ctx, p) is None:
        return None
    reseller = ctx.partner_program is RESELLER
    actions = R10_ACTIONS + DELEGATED_ADMIN_ACTION if reseller and not ctx.delegated_admin else R10_ACTIONS
    return Verdict(BLOCKED, _R10_REASON, _R10, actions, sub.term_end, ctx.providers if reseller else ())


# ---------------------------------------------------------------- the `current` book alone

_T1, _T2, _T3, _E1, _E2 = Rule.T1, Rule.T2, Rule.T3, Rule.E1, Rule.E2
SWITCH = Decision.CSP_SWITCH_PERMITTED
_NEEDS_RELATIONSHIP = Reason.TRANSFER_NEEDS_RELATIONSHIP
_NCE_TRANSFER = Reason.NCE_TRANSFER_AVAILABLE
TRANSFER_ACTIONS = (A.REQUEST_PARTNER_TRANSFER,)
AZURE_SWITCH_ACTIONS = (A.REQUEST_AZURE_PARTNER_SWITCH,)
RESELLER_INVITATION_ACTIONS = (A.SEND_RESELLER_INVITATION_TO_CUSTOMER,)
R10_WINDOW_CLOSED_ACTIONS = (A.SUPPORT_UNDER_RELATIONSHIP, A.WAIT_FOR_TERM_END)
V_E1 = Verdict(SWITCH, Reason.EA_BILLING_TRANSFER_AVAILABLE, Rule.E1, (A.REQUEST_EA_BILLING_TRANSFER,), None, ())
V_E2 = Verdict(
    ELIGIBLE, _NEEDS_RELATIONSHIP, Rule.E2, (A.SEND_RELATIONSHIP_REQUEST, A.REQUEST_EA_BILLING_TRANSFER), None, ()
)


def relationship_actions(ctx: AccountContext) -> tuple[tuple[NextAction, ...], tuple[str, ...]] | None:
    """The next actions of a relationship request in `current`, and the providers they go through: a direct
    partner sends the request; a reseller sends its own invitation (naming one of its providers), then asks
    for delegated admin while it has none. None for a reseller without a provider."""
    if ctx.partner_program is not RESELLER:
        return R9_DIRECT_ACTIONS, ()
    if not ctx.providers:
        return None
    actions = (
        RESELLER_INVITATION_ACTIONS if ctx.delegated_admin else RESELLER_INVITATION_ACTIONS + DELEGATED_ADMIN_ACTION
    )
    return actions, ctx.providers


def _transfer_needs_relationship(ctx: AccountContext, rule: Rule, then: tuple[NextAction, ...]) -> Verdict:
    """T2 and T3: the relationship actions, then the transfer; a reseller without a provider links one first."""
    request = relationship_actions(ctx)
    if request is None:
        return Verdict(ELIGIBLE, _NO_PROVIDER, rule, R9_NO_PROVIDER_ACTIONS, None, ())
    actions, via = request
    return Verdict(ELIGIBLE, _NEEDS_RELATIONSHIP, rule, actions + then, None, via)


def rule_t1_nce_transfer(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is LICENSE and p.commerce is NCE and ctx.relationship and _other_csp_seller(ctx, p):
        via = ctx.providers if ctx.partner_program is RESELLER else ()
        return Verdict(SWITCH, _NCE_TRANSFER, _T1, TRANSFER_ACTIONS, None, via)
    return None


def rule_t2_nce_transfer_needs_relationship(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is LICENSE and p.commerce is NCE and not ctx.relationship and _other_csp_seller(ctx, p):
        return _transfer_needs_relationship(ctx, _T2, TRANSFER_ACTIONS)
    return None


def rule_t3_azure_transfer_needs_relationship(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is USAGE and not ctx.relationship and _other_csp_seller(ctx, p):
        return _transfer_needs_relationship(ctx, _T3, AZURE_SWITCH_ACTIONS)
    return None


def _ea_billing_transfer(ctx: AccountContext, p: SubscriptionPurchased) -> bool:
    """E1 and E2's condition: Azure of a direct EA, and the account partner a direct-bill Azure Expert MSP."""
    return (
        p.billing_model is USAGE
        and p.channel is ENTERPRISE_AGREEMENT
        and ctx.partner_program is CSP_DIRECT
        and ctx.partner_expert_msp
    )


def rule_e1_ea_billing_transfer(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    return V_E1 if ctx.relationship and _ea_billing_transfer(ctx, p) else None


def rule_e2_ea_billing_transfer_needs_relationship(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    return V_E2 if not ctx.relationship and _ea_billing_transfer(ctx, p) else None


def cancellation_open(ctx: AccountContext, sub: Subscription) -> bool:
    """Whether the customer may still cancel: always for legacy commerce; for NCE, until 00:00 UTC of the day
    after the window's last day (`Subscription.window_end`), and never without a window."""
    p = sub.purchase
    assert p is not None
    if p.commerce is not NCE:
        return True
    end = sub.window_end
    return end is not None and ctx.clock < end


def current_rule_r9_eligible_for_relationship_request(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is not LICENSE or ctx.relationship:
        return None
    reason = multichannel_reason(ctx, p)
    if reason is None:
        return None
    request = relationship_actions(ctx)
    if request is None:
        return Verdict(ELIGIBLE, _NO_PROVIDER, _R9, R9_NO_PROVIDER_ACTIONS, sub.term_end, ())
    actions, via = request
    return Verdict(ELIGIBLE, reason, _R9, actions, sub.term_end, via)


def current_rule_r10_relationship_accepted(ctx: AccountContext, sub: Subscription) -> Verdict | None:
    p = sub.purchase
    assert p is not None
    if p.billing_model is not LICENSE or not ctx.relationship:
        return None
    if multichannel_reason(ctx, p) is None:
        return None
    actions: tuple[NextAction, ...] = R10_ACTIONS if cancellation_open(ctx, sub) else R10_WINDOW_CLOSED_ACTIONS
    reseller = ctx.partner_program is RESELLER
    if reseller and not ctx.delegated_admin:
        actions = actions + DELEGATED_ADMIN_ACTION
    return Verdict(BLOCKED, _R10_REASON, _R10, actions, sub.term_end, ctx.providers if reseller else ())


class RuleBookGap(Exception):
    """No rule matched: impossible for a validated purchase (every channel reaches a rule in each book)."""


def customer_status(ctx: AccountContext, any_multichannel: bool) -> CustomerStatus:
    """NOT_ELIGIBLE when R1 or R2 applies to the account; MULTICHANNEL when a decision comes from R8-R10, E1 or
    E2 (`any_multichannel`: E1 and E2 exist in `current` only); else SINGLE_CHANNEL. The same in both books."""
    if ctx.account_verdict is not None:
        return _NOT_ELIGIBLE
    return _MULTICHANNEL if any_multichannel else _SINGLE_CHANNEL


_NOT_ELIGIBLE, _MULTICHANNEL = CustomerStatus.NOT_ELIGIBLE, CustomerStatus.MULTICHANNEL
_SINGLE_CHANNEL = CustomerStatus.SINGLE_CHANNEL
