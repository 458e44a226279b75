"""The least-privilege ACLs of the classifier service, derived from its settings.

What each client of `multichannel run` does, and the right it needs (READ and WRITE imply DESCRIBE):

- group consumer: subscribes to the subscription topic in group `<application id>`: READ topic, READ group.
- partner feed: assigns every partition of the partner topic, without joining or committing, but its
  group id `<application id>-partners` makes the client look up the group's coordinator: READ topic,
  DESCRIBE group.
- restore reader: assigns changelog partitions and reads them to their end (group id
  `<application id>-restore`, looked up likewise): READ changelog, DESCRIBE group.
- transactional producer: `init_transactions` with `<application id>-<instance id>`: WRITE transactional
  id; writes decisions, statuses, dead letters and changelog: WRITE each topic; sends the batch's offsets
  to the transaction: READ group, READ topic.

Every instance of a fleet has its own transactional id, so that right is granted on the prefix
`<application id>-`. Nothing needs a cluster right: an idempotent or transactional producer is allowed by
WRITE on a topic or transactional id (KIP-679). Creating topics (`topics create`) and registering schemas
are left to an administrator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from config.errors import access_refusal
from config.settings import Settings


@dataclass(frozen=True)
class Acl:
    """One ALLOW rule: `principal` may do `operation` on the resource, from any host."""

    resource_type: str
    """TOPIC, GROUP or TRANSACTIONAL_ID."""
    resource_name: str
    pattern_type: str
    """LITERAL (that name) or PREFIXED (every name that starts with it)."""
    operation: str
    principal: str
    why: str

    def binding(self) -> AclBinding:
        return AclBinding(
            ResourceType[self.resource_type],
            self.resource_name,
            ResourcePatternType[self.pattern_type],
            self.principal,
            "*",
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )

    def as_dict(self) -> dict[str, str]:
        return {**asdict(self), "permission": "ALLOW", "host": "*"}


def service_principal(settings: Settings) -> str:
    return f"User:{settings.sasl_username}"


def service_acls(settings: Settings, principal: str | None = None) -> list[Acl]:
    """The ACLs `multichannel run` needs with these settings, and no more (see the module docstring)."""
    who = principal or service_principal(settings)

    def acl(kind: str, name: str, operation: str, why: str, pattern: str = "LITERAL") -> Acl:
        return Acl(kind, name, pattern, operation, who, why)

    return [
        acl("TOPIC", settings.subscription_topic, "READ", "input: consumed in the group, offsets committed"),
        acl("TOPIC", settings.partner_topic, "READ", "input: the partner table, read whole by every instance"),
        acl("TOPIC", settings.decision_topic, "WRITE", "output: decisions"),
        acl("TOPIC", settings.status_topic, "WRITE", "output: customer statuses"),
        acl("TOPIC", settings.dead_letter_topic, "WRITE", "output: dead letters"),
        acl("TOPIC", settings.changelog_topic, "WRITE", "state changelog: written in every transaction"),
        acl("TOPIC", settings.changelog_topic, "READ", "state changelog: read to its end on assignment"),
        acl("TOPIC", settings.partner_table_topic, "WRITE", "partner table: the winning entries, in transactions"),
        acl("TOPIC", settings.partner_table_topic, "READ", "partner table: read whole at every start"),
        acl("GROUP", settings.application_id, "READ", "the consumer group: join, and offsets in transactions"),
        acl("GROUP", f"{settings.application_id}-partners", "DESCRIBE", "the partner feed's coordinator lookup"),
        acl("GROUP", f"{settings.application_id}-restore", "DESCRIBE", "the restore reader's coordinator lookup"),
        acl(
            "TRANSACTIONAL_ID",
            f"{settings.application_id}-",
            "WRITE",
            "transactions: every instance's id is <application id>-<instance id>",
            "PREFIXED",
        ),
    ]


def apply_acls(admin_conf: dict[str, Any], acls: list[Acl], timeout_s: float = 30.0) -> None:
    """Create the ACLs (one that exists already is left as it is); an `AccessRefused` when the client may not."""
    admin = AdminClient(admin_conf)
    for future in admin.create_acls([a.binding() for a in acls], request_timeout=timeout_s).values():
        try:
            future.result()
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            user = str(admin_conf.get("sasl.username", ""))
            refused = access_refusal(err, user=user, doing="creating ACLs", denied="ALTER on the cluster")
            if refused is not None:
                raise refused from None
            raise


def missing_rights(client_conf: dict[str, Any], acls: list[Acl], timeout_s: float = 10.0) -> list[str]:
    """What the client of `client_conf` lacks of the topic and group rights of `acls`, as the brokers see
    them (each as "WRITE on topic t"); transactional ids cannot be asked about, so they are not listed."""
    admin = AdminClient(client_conf)
    wanted: dict[tuple[str, str], set[str]] = {}
    for a in acls:
        if a.pattern_type == "LITERAL" and a.resource_type in {"TOPIC", "GROUP"}:
            wanted.setdefault((a.resource_type, a.resource_name), set()).add(a.operation)
    topics = sorted(name for kind, name in wanted if kind == "TOPIC")
    groups = sorted(name for kind, name in wanted if kind == "GROUP")
    allowed: dict[tuple[str, str], set[str]] = {}
    results = [
        *(
            (("TOPIC", name), f)
            for name, f in admin.describe_topics(
                TopicCollection(topics), include_authorized_operations=True, request_timeout=timeout_s
            ).items()
        ),
        *(
            (("GROUP", name), f)
            for name, f in admin.describe_consumer_groups(
                groups, include_authorized_operations=True, request_timeout=timeout_s
            ).items()
        ),
    ]
    for key, future in results:
        try:
            allowed[key] = {op.name for op in future.result().authorized_operations or []}
        except KafkaException:  # not even DESCRIBE
            allowed[key] = set()
    return [
        f"{op} on {kind.lower()} {name}"
        for (kind, name), ops in wanted.items()
        for op in sorted(ops - allowed.get((kind, name), set()))
    ]
