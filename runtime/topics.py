"""Create the service's topics when missing (existing topics are never altered)."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from runtime.settings import CommonSection, EhrSection

log = logging.getLogger(__name__)

STATUS_TOPIC_CONFIGS = {"cleanup.policy": "compact"}


def topic_specs(settings: EhrSection) -> list[NewTopic]:
    input_max = settings.input_max_bytes
    dl_max = settings.deadletter_max_bytes
    p, r = settings.partitions, settings.replication_factor
    specs = [
        NewTopic(settings.topic_visits, p, r, topic_configs={"max.message.bytes": str(input_max)}),
        NewTopic(settings.topic_alerts, p, r),
        NewTopic(settings.topic_checked, p, r),
        # A table of visits (key visit_id): compacted, so a consumer that reads it from the
        # start gets each visit's latest status without the whole history of changes.
        NewTopic(settings.topic_status, p, r, topic_configs=STATUS_TOPIC_CONFIGS),
        NewTopic(settings.topic_notices, p, r),
        NewTopic(settings.topic_deadletter, p, r, topic_configs={"max.message.bytes": str(dl_max)}),
    ]
    if settings.ehr_enabled:
        inbound = {"max.message.bytes": str(input_max)}
        specs += [
            NewTopic(settings.topic_hl7_inbound, p, r, topic_configs=inbound),
            NewTopic(settings.topic_fhir_inbound, p, r, topic_configs=inbound),
            NewTopic(settings.topic_ehr_parts, p, r, topic_configs=inbound),
            NewTopic(
                settings.topic_ehr_deadletter,
                p,
                r,
                topic_configs={"max.message.bytes": str(dl_max)},
            ),
        ]
    return specs


def _admin(settings: CommonSection) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.app_id}-admin",
        **settings.aiokafka_security(),
    )


async def topic_config(settings: CommonSection, topic: str, name: str) -> str | None:
    """A topic's effective config value (its own or the broker's default), None when it
    cannot be read (the topic does not exist, no describe permission)."""
    admin = _admin(settings)
    try:
        await admin.start()
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs=None)]
        )
        for response in responses:
            for resource in response.resources:
                _error, _msg, _type, _name, entries = resource[:5]
                for entry in entries:
                    if entry[0] == name and entry[1] is not None:
                        return str(entry[1])
    except Exception as exc:  # callers keep their defaults
        log.warning("cannot read %s's %s (%s)", topic, name, type(exc).__name__)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return None


async def record_limit(settings: CommonSection, topic: str) -> int | None:
    """The topic's effective `max.message.bytes` (its own or the broker's default), None when
    it cannot be read (no describe permission, say): callers keep their configured limit."""
    value = await topic_config(settings, topic, "max.message.bytes")
    return int(value) if value is not None else None


async def status_topic_problem(settings: CommonSection) -> str | None:
    """Why an existing status topic cannot be used, or None. It must be compacted (EVENTS.md
    "VisitStatus v1": a table of visits): one created without compaction would drop visits'
    current statuses at its retention, silently. A missing topic is created compacted; a
    policy that cannot be read is not refused."""
    policy = await topic_config(settings, settings.topic_status, "cleanup.policy")
    if policy is None or "compact" in policy.split(","):
        return None
    return (
        f"topic {settings.topic_status} has cleanup.policy={policy}; the visit status topic must "
        "be compacted (a table of visits, EVENTS.md): set cleanup.policy=compact on it "
        "(kafka-configs.sh --alter --entity-type topics --entity-name "
        f"{settings.topic_status} --add-config cleanup.policy=compact)"
    )


async def ensure_topics(settings: EhrSection, names: set[str] | None = None) -> list[str]:
    """Create missing topics (of `names` only, when given: what a program writes); returns the
    names created."""
    admin = _admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [t for t in topic_specs(settings) if names is None or t.name in names]
        missing = [t for t in wanted if t.name not in existing]
        created = []
        for spec in missing:
            try:
                await admin.create_topics([spec])
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another worker created it meanwhile
        if created:
            log.info("created topics: %s", ", ".join(created))
        return created
    finally:
        await admin.close()
