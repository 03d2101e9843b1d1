"""Settings: the only code that reads the environment (prefix `TC_`).

One environment serves every program; each reads its own section and the shared ones:

    CommonSection    every program: the broker, its security, the service's topics and limits
    EhrSection       the EHR path (worker's parse and join stages, the gateway, `convert`)
    WorkerSection    the stream worker and the command line's tools (streams/, cli/)
    RuleFilesSection the rule set (part of WorkerSection; `audit` reads it alone, the worker's
                     loader in runtime/rules.py gives both the same rules)
    GatewaySection   the MLLP gateway (gateway/, TC_MLLP_*)

    Settings         = Worker + EHR + Common: the worker and the command line
    GatewaySettings  = Gateway + EHR + Common: the gateway

Frozen and strict: a `TC_*` variable that no section knows, or a bad value in a section the
program reads, stops it at start with a message naming the variable. A variable of another
program's section is accepted and not validated there (the worker does not check the gateway's
certificate files, nor the gateway the worker's rule files). Faust's own environment variables
(`BROKER_URL`, `WEB_PORT`, `APP_DATADIR`, ...) are *not* read: the app is built with `env={}` and
every faust setting it uses is passed explicitly from here.
"""

from __future__ import annotations

import os
import re
import ssl
import sys
from collections.abc import Mapping
from datetime import date, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from compliance.catalog import parse_catalog
from compliance.ruleset import CATALOG
from ehr.patient import patient_ref as ehr_patient_ref
from ehr.profile import EhrConfig, ProfileError, load_config, load_profile
from schemas.decode import DEFAULT_MAX_BYTES
from schemas.patient_ref import DEFAULT_PATIENT_REF_PATTERN, compile_pattern


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    PLAIN = "PLAIN"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


#: The longest a rebalance waits for batches in flight before giving up their partitions.
MAX_REVOKE_WAIT_S = 30.0
#: Bytes kept free under a topic's record limit for Kafka's own framing (record batch header,
#: record varints, timestamps: a batch holding one record adds < 100).
FRAMING_BYTES = 1024


class CommonSection(BaseModel):
    """Every program: the broker, its security, the service's topics and limits, logging."""

    #: Comma-separated bootstrap servers, host:port (a kafka:// prefix is accepted).
    brokers: str = "127.0.0.1:19092"
    app_id: str = "therapy-compliance"
    topic_visits: str = "therapy.visit.completed.v1"
    topic_alerts: str = "billing.compliance.alert.v1"
    topic_checked: str = "therapy.visit.checked.v1"
    topic_deadletter: str = "therapy.visit.deadletter.v1"
    #: VisitStatus v1, compacted (EVENTS.md "VisitStatus v1"): one current record per visit.
    topic_status: str = "billing.visit.status.v1"
    #: ComplianceNotice v1 (EVENTS.md "ComplianceNotice v1"), keyed by patient_ref: what falls
    #: due before an episode rule is broken, for the clinic.
    topic_notices: str = "clinic.compliance.notice.v1"
    #: Partitions for topics the worker creates when they are missing (existing topics are
    #: left alone). Input parallelism: one consumer per partition at most.
    partitions: Annotated[int, Field(ge=1, le=1024)] = 4
    replication_factor: Annotated[int, Field(ge=1, le=7)] = 1
    create_topics: bool = True
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    web_host: str = "127.0.0.1"
    #: Records larger than this are dead-lettered with reason too_large.
    max_record_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = DEFAULT_MAX_BYTES
    #: Largest dead letter; the dead-letter topic is created with this max.message.bytes so a
    #: too-large record's original bytes (base64) still fit.
    deadletter_max_bytes: Annotated[int, Field(ge=1024)] = 16 * 1024 * 1024
    #: Accepted alphabet of patient_ref, a regular expression the whole value must match (on
    #: top of the contract's printable ASCII, 1-128 characters); other records are
    #: dead-lettered (schema_violation) and counted by problem. Default: no spaces.
    patient_ref_pattern: str = DEFAULT_PATIENT_REF_PATTERN
    log_level: LogLevel = LogLevel.INFO
    #: At start the worker waits this long for an unreachable broker before giving up (exit 69).
    startup_wait_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: Event loop of the worker: uvloop (faster) or asyncio (the standard library's).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    #: After SIGTERM/SIGINT the worker exits within this bound: a graceful stop that has not
    #: finished by then is cut short (uncommitted work is re-delivered: at-least-once).
    shutdown_timeout_s: Annotated[float, Field(ge=1, le=600)] = 30.0

    @property
    def bootstrap_servers(self) -> list[str]:
        return self.brokers.split(",")

    @property
    def input_max_bytes(self) -> int:
        """Record limit of the input topics the programs create: somewhat over the worker's own
        limit, so an oversized record reaches the worker and is dead-lettered (too_large)
        instead of being refused to its producer; a dead letter holds it in base64."""
        return self.deadletter_max_bytes * 3 // 4 - 4096

    @field_validator("brokers")
    @classmethod
    def _brokers(cls, value: str) -> str:
        hosts = [h.strip().removeprefix("kafka://") for h in value.split(",") if h.strip()]
        if not hosts or any(":" not in h for h in hosts):
            raise ValueError("TC_BROKERS must be host:port[,host:port...]")
        return ",".join(hosts)

    @field_validator("patient_ref_pattern")
    @classmethod
    def _patient_ref_pattern(cls, value: str) -> str:
        compile_pattern(value)  # ValueError names the problem
        return value

    @model_validator(mode="after")
    def _common(self) -> CommonSection:
        sasl = self.security_protocol in (
            SecurityProtocol.SASL_SSL,
            SecurityProtocol.SASL_PLAINTEXT,
        )
        if sasl and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(
                f"TC_SECURITY_PROTOCOL={self.security_protocol.value} needs TC_SASL_USERNAME and "
                "TC_SASL_PASSWORD"
            )
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TC_{name.upper()}={path} is not a readable file")
        if self.deadletter_max_bytes < self.max_record_bytes * 4 // 3 + 4096:
            raise ValueError(
                "TC_DEADLETTER_MAX_BYTES must hold a max-size record in base64 "
                "(at least 4/3 of TC_MAX_RECORD_BYTES + 4 KiB)"
            )
        return self

    @property
    def patient_ref_regex(self) -> re.Pattern[str]:
        """TC_PATIENT_REF_PATTERN compiled (validated when the settings were read)."""
        return compile_pattern(self.patient_ref_pattern)

    @property
    def drain_timeout_s(self) -> float:
        """How long a graceful stop waits for unacknowledged outputs: two thirds of the
        shutdown bound, leaving the rest for faust to commit and leave the group."""
        return self.shutdown_timeout_s * 2 / 3

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
            return None
        ctx = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        ctx.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile:
            ctx.load_cert_chain(
                str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None
            )
        return ctx

    def aiokafka_security(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients (demo feed, tail, admin, tests)."""
        out: dict[str, Any] = {"security_protocol": self.security_protocol.value}
        ctx = self.ssl_context()
        if ctx is not None:
            out["ssl_context"] = ctx
        if self.security_protocol in (SecurityProtocol.SASL_SSL, SecurityProtocol.SASL_PLAINTEXT):
            assert self.sasl_password is not None
            out.update(
                sasl_mechanism=self.sasl_mechanism.value,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password.get_secret_value(),
            )
        return out

    def public_view(self) -> dict[str, Any]:
        """Effective settings for the start-up log: secrets masked."""
        out = self.model_dump(mode="json")
        for secret in ("sasl_password", "ehr_patient_key"):
            if out.get(secret) is not None:
                out[secret] = "***"
        return out


#: One line: the EHR path on (TC_EHR_PATIENT_KEY) without TC_EHR_PROFILE (worker, gateway).
NO_EHR_PROFILE = (
    "the EHR path (TC_EHR_PATIENT_KEY is set) needs TC_EHR_PROFILE: the shipped ehr/profile.toml "
    "is an example (timezone UTC); copy it, set `timezone` and your senders' tables, and point "
    "TC_EHR_PROFILE at the copy"
)


class EhrSection(CommonSection):
    """The EHR path (docs/integration-hl7.md): the worker's parse and join stages, the MLLP
    gateway and `convert`."""

    #: Secret for patient_ref = HMAC-SHA256(key, patient identifier), at least 16 bytes. The EHR
    #: path (gateway, parse and join agents) runs only when it is set.
    ehr_patient_key: SecretStr | None = None
    #: Integration profile (local code tables, OBX codes, the clinic's timezone). Required by the
    #: worker and the gateway when the EHR path is on (`ehr_profile_problem`); `convert` without it
    #: uses the shipped example ehr/profile.toml and says so.
    ehr_profile: Path | None = None
    topic_hl7_inbound: str = "ehr.hl7v2.inbound.v1"
    topic_fhir_inbound: str = "ehr.fhir.inbound.v1"
    #: Parsed visit parts, keyed by patient_ref (co-partitioned with the join's table).
    topic_ehr_parts: str = "ehr.visit.parts.v1"
    topic_ehr_deadletter: str = "ehr.deadletter.v1"

    @model_validator(mode="after")
    def _ehr(self) -> EhrSection:
        if self.ehr_patient_key is not None and len(self.ehr_patient_key.get_secret_value()) < 16:
            raise ValueError("TC_EHR_PATIENT_KEY must be at least 16 characters (HMAC key)")
        if self.ehr_patient_key is not None:
            # The EHR path writes visits whose patient_ref it derives (P- and 20 hex digits):
            # a pattern refusing them would dead-letter every visit it assembles.
            sample = ehr_patient_ref(b"settings-check-key", "MRN", "AUTHORITY")
            if compile_pattern(self.patient_ref_pattern).fullmatch(sample) is None:
                raise ValueError(
                    "TC_PATIENT_REF_PATTERN refuses the EHR path's own patient_ref format "
                    "(P- and 20 hex digits) while TC_EHR_PATIENT_KEY is set"
                )
        if self.ehr_profile is not None and not Path(self.ehr_profile).is_file():
            raise ValueError(f"TC_EHR_PROFILE={self.ehr_profile} is not a readable file")
        if self.ehr_patient_key is not None:
            # At start, not at the first message: a profile without `timezone` (or any bad
            # entry) stops the worker, gateway and convert with the file and entry named.
            try:
                load_profile(self.ehr_profile)
            except ProfileError as exc:
                raise ValueError(f"TC_EHR_PROFILE: {exc}") from None
        return self

    @property
    def ehr_enabled(self) -> bool:
        return self.ehr_patient_key is not None

    def ehr_profile_problem(self) -> str | None:
        """Why the worker or the gateway must not start, else None: the EHR path on without
        TC_EHR_PROFILE would run on the shipped example profile, whose `timezone = "UTC"` turns
        14:20 in Wisconsin into 14:20Z (issue 20 item 2: UTC must be written, not assumed)."""
        if self.ehr_enabled and self.ehr_profile is None:
            return NO_EHR_PROFILE
        return None

    def ehr_config(self) -> EhrConfig:
        """The integration profile and patient key (raises ProfileError naming the entry)."""
        if self.ehr_patient_key is None:
            raise ValueError("the EHR path needs TC_EHR_PATIENT_KEY")
        return load_config(self.ehr_patient_key.get_secret_value(), self.ehr_profile)


class RuleFilesSection(BaseModel):
    """The rule set (compliance/ruleset.py): read by the worker and by `audit` alike
    (runtime/rules.py loads it), so one environment gives both the same rules."""

    #: Rule data directory (compliance/ruleset.py layout); unset: the rules shipped with the
    #: package. CMS NCCI PTP / MUE files and fee schedules found in it are loaded too.
    ruleset_dir: Path | None = None
    #: More CMS files, comma-separated paths: practitioner PTP (ccipra-*.TXT), practitioner
    #: MUE (MCR_MUE_PractitionerServices_Eff_MM-DD-YYYY.csv), fee schedules.
    ncci_ptp_files: str = ""
    ncci_mue_files: str = ""
    fee_files: str = ""

    @property
    def ruleset_files(self) -> dict[str, list[Path]]:
        """The explicitly listed CMS files, by kind (keyword arguments of load_ruleset)."""
        return {
            "ptp_files": _paths(self.ncci_ptp_files),
            "mue_files": _paths(self.ncci_mue_files),
            "fee_files": _paths(self.fee_files),
        }

    def check_rule_files(self) -> None:
        """The directory and files exist (run by the worker's validator, after its other
        checks, and by rule_files_from_env): ValueError naming the variable."""
        if self.ruleset_dir is not None and not self.ruleset_dir.is_dir():
            raise ValueError(f"TC_RULESET_DIR={self.ruleset_dir} is not a directory")
        for name in ("ncci_ptp_files", "ncci_mue_files", "fee_files"):
            for path in _paths(getattr(self, name)):
                if not path.is_file():
                    raise ValueError(f"TC_{name.upper()}: {path} is not a readable file")


class WorkerSection(CommonSection, RuleFilesSection):
    """The stream worker (streams/): batching, commits, the consumer group, state, rules, the
    join."""

    web_port: Annotated[int, Field(ge=1, le=65535)] = 6066
    data_dir: Path = Path(".run/worker-data")
    #: Records per processing batch, and the longest wait to fill one (seconds).
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 500
    batch_within_s: Annotated[float, Field(gt=0, le=10)] = 0.02
    commit_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    #: /health fails when input is waiting (lag > 0) and nothing was processed for this long.
    stall_after_s: Annotated[float, Field(gt=0)] = 60.0
    #: RocksDB memory per table partition: the memtable size (two at most) and the block cache
    #: (faust's defaults, 64 MB x 3 and 2 GB, let a worker's RSS grow with its partitions).
    state_write_buffer_mb: Annotated[int, Field(ge=1, le=1024)] = 8
    state_block_cache_mb: Annotated[int, Field(ge=1, le=16384)] = 16
    #: A local store last written longer ago than this is wiped when its partition is assigned
    #: and rebuilt from the changelog (streams/tables.py): a deleted key's tombstone may be gone
    #: from the compacted changelog after its `delete.retention.ms` (Kafka's default: 24 h), and
    #: a store that missed it would keep the key. Below the changelogs' delete.retention.ms.
    state_max_stale_hours: Annotated[float, Field(gt=0)] = 20.0
    #: Decoded patient histories kept in memory (streams/state_cache.py), the whole worker's;
    #: 0 (default): off. Off because with today's record classes (collector-tracked objects)
    #: keeping them alive cost more than the decode it saves (bench/RESULTS.md, "2026-12-07:
    #: decoded state in memory").
    state_cache_mb: Annotated[int, Field(ge=0, le=16384)] = 0
    #: Python's collector: objects allocated between two young collections. 0 (default): as
    #: Python has it (700); set, the start-up objects are also frozen out of collections. Not
    #: raised by default: end to end it measured within this machine's noise (bench/RESULTS.md,
    #: "2026-12-07: decoded state in memory").
    gc_threshold: Annotated[int, Field(ge=0, le=10_000_000)] = 0
    #: faust's fetch loop: `tckafka` (streams/transport.py: direct hand-over) or `kafka` (faust's
    #: own, kept for comparison and as a fallback; the offset guard covers both).
    fetch_loop: Literal["tckafka", "kafka"] = "tckafka"
    #: A worker that dies without leaving the group is replaced after this long (Kafka session).
    session_timeout_s: Annotated[float, Field(ge=6, le=300)] = 10.0
    heartbeat_interval_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    #: The producer gives up on a send after this long (aiokafka retries inside it until then).
    #: Bounded so that what a rebalance finds handed to the producer resolves within the
    #: revoke wait: twice this must be below min(TC_SESSION_TIMEOUT_S, 30).
    producer_request_timeout_s: Annotated[float, Field(ge=1, le=120)] = 4.0
    #: Same-day details (billed lines, NPIs) kept per patient for the rules that span visits of
    #: one day, in days of service before the patient's newest one.
    history_horizon_days: Annotated[int, Field(ge=1, le=3660)] = 90
    #: Episode-of-care and KX state kept per patient, in days before the newest date of service
    #: (covers the calendar year for the KX threshold; compliance/retention.py).
    episode_horizon_days: Annotated[int, Field(ge=1, le=3660)] = 400
    #: State store: rocksdb (local RocksDB per partition, restored from the changelog) or
    #: memory (tests; rebuilt from the changelog at every start).
    store: Literal["rocksdb", "memory"] = "rocksdb"
    #: A visit with only one part (charges or documentation) is emitted after this long anyway,
    #: and the checks say what is missing.
    join_wait_s: Annotated[float, Field(ge=1, le=30 * 86400)] = 900.0
    #: How long the join keeps an emitted visit's parts for corrections and re-sends (days).
    join_retention_days: Annotated[int, Field(ge=1, le=3650)] = 30
    #: The notices' daily run (streams/notice_run.py) runs each date once the clinic's clock
    #: (the integration profile's `timezone`, else UTC) reads this time, HH:MM.
    notice_daily_at: Annotated[
        str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    ] = "07:00"
    #: Patients per step of the daily run (one transaction each; the event loop runs between).
    notice_scan_chunk: Annotated[int, Field(ge=1, le=5_000)] = 500
    #: A step of the daily run stops after this long (seconds) even before its
    #: TC_NOTICE_SCAN_CHUNK patients: the event loop runs between steps, and a visit that
    #: arrives during a step waits for it (kept short for the visits' latency).
    notice_scan_budget_s: Annotated[float, Field(gt=0, le=60)] = 0.02
    #: How often the worker looks whether a daily run is due (seconds).
    notice_run_interval_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    #: Pins the daily run's clock to this date (at TC_NOTICE_DAILY_AT): the worker runs every
    #: date missed through it, and no later one. For a stream run "as of" a date (the same
    #: notices as `audit --as-of`) and tests; unset: the clinic's wall clock.
    notice_as_of: date | None = None

    @property
    def changelog_topic_configs(self) -> dict[str, str]:
        """Topic configuration of the tables' changelogs, beside faust's (compacted): they take
        records as large as the producer sends (a topic at the broker's 1 MB default would
        refuse a large join record forever)."""
        return {"max.message.bytes": str(self.deadletter_max_bytes)}

    @property
    def revoke_wait_s(self) -> float:
        """How long a rebalance waits for the batches in flight before giving them up."""
        return min(self.session_timeout_s, MAX_REVOKE_WAIT_S)

    @property
    def handover_timeout_s(self) -> float:
        """The longest a send already handed to the producer takes to resolve: aiokafka expires
        a batch after its request timeout, and a request sent just before takes at most as
        long again (aiokafka/producer/sender.py `_can_retry`, message_accumulator `expired`)."""
        return 2 * self.producer_request_timeout_s + 1

    @property
    def faust_broker(self) -> str:
        # tckafka: streams/transport.py, registered as a faust transport in pyproject.toml.
        return ";".join(f"{self.fetch_loop}://{h}" for h in self.bootstrap_servers)

    @property
    def rocksdb_options(self) -> dict[str, Any]:
        """faust's RocksDB store options for every table (rocksdict driver)."""
        return {
            "driver": "rocksdict",
            "write_buffer_size": self.state_write_buffer_mb * 2**20,
            "max_write_buffer_number": 2,
            "block_cache_size": self.state_block_cache_mb * 2**20,
        }

    @model_validator(mode="after")
    def _worker(self) -> WorkerSection:
        if self.handover_timeout_s >= self.revoke_wait_s:
            raise ValueError(
                f"TC_PRODUCER_REQUEST_TIMEOUT_S={self.producer_request_timeout_s:g} is too long: "
                "a rebalance waits min(TC_SESSION_TIMEOUT_S, 30) = "
                f"{self.revoke_wait_s:g}s, and sends already handed to the producer must resolve "
                "within it (twice the request timeout, plus 1s); lower it or raise "
                "TC_SESSION_TIMEOUT_S"
            )
        if self.episode_horizon_days < self.history_horizon_days:
            raise ValueError(
                f"TC_EPISODE_HORIZON_DAYS={self.episode_horizon_days} must be at least "
                f"TC_HISTORY_HORIZON_DAYS={self.history_horizon_days} (the episode part of the "
                "history outlives its same-day part)"
            )
        self.check_rule_files()
        return self


class GatewaySection(CommonSection):
    """The MLLP gateway (gateway/, `therapy-compliance mllp-gateway`): listen address, largest
    message, how long to wait for the broker before answering AR, idle connections closed after,
    TLS, its own /metrics and /health."""

    #: The MLLP gateway (`therapy-compliance mllp-gateway`): listen address, largest message,
    #: how long to wait for the broker before answering AR, idle connections closed after.
    mllp_host: str = "127.0.0.1"
    mllp_port: Annotated[int, Field(ge=1, le=65535)] = 2575
    mllp_max_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = DEFAULT_MAX_BYTES
    mllp_ack_timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    mllp_idle_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 300.0
    #: TLS for MLLP connections (both set: TLS on).
    mllp_certfile: Path | None = None
    mllp_keyfile: Path | None = None
    #: The gateway's own /metrics and /health.
    mllp_web_port: Annotated[int, Field(ge=1, le=65535)] = 6068

    @model_validator(mode="after")
    def _gateway(self) -> GatewaySection:
        for name in ("mllp_certfile", "mllp_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"TC_{name.upper()}={path} is not a readable file")
        if (self.mllp_certfile is None) != (self.mllp_keyfile is None):
            raise ValueError("TC_MLLP_CERTFILE and TC_MLLP_KEYFILE go together (TLS)")
        if self.mllp_max_bytes + FRAMING_BYTES > self.input_max_bytes:
            raise ValueError(
                f"TC_MLLP_MAX_BYTES={self.mllp_max_bytes} does not fit the inbound topic's record "
                f"limit ({self.input_max_bytes} bytes, from TC_DEADLETTER_MAX_BYTES): raise "
                "TC_DEADLETTER_MAX_BYTES or lower TC_MLLP_MAX_BYTES"
            )
        return self


#: Every section's variables: one environment serves every program.
SECTIONS: tuple[type[BaseModel], ...] = (CommonSection, EhrSection, WorkerSection, GatewaySection)


class _FromEnvironment(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TC_", frozen=True, extra="forbid", case_sensitive=False
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """This program's settings from the environment. A TC_* variable that no section knows
        is an error (a typo such as TC_BROKER would otherwise silently leave the default in
        force); another program's variables are accepted and left to it."""
        env = os.environ if environ is None else environ
        known = {f"TC_{name.upper()}" for section in SECTIONS for name in section.model_fields}
        unknown = sorted(k for k in env if k.upper().startswith("TC_") and k.upper() not in known)
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        own = set(cls.model_fields)
        values = {k.upper()[3:].lower(): v for k, v in env.items() if k.upper().startswith("TC_")}
        return cls.model_validate({k: v for k, v in values.items() if k in own})


class Settings(WorkerSection, EhrSection, _FromEnvironment):
    """The stream worker's and the command line's settings: every section but the gateway's."""

    @property
    def clinic_zone(self) -> ZoneInfo:
        """The clinic's time zone, the service's one zone setting: the integration profile's
        `timezone` (TC_EHR_PROFILE), else UTC (EVENTS.md "ComplianceNotice v1": default UTC).
        The notices' daily run reads its dates and its time of day in it."""
        if self.ehr_profile is None:
            return ZoneInfo("UTC")
        return load_profile(self.ehr_profile).zone

    @property
    def notice_daily_time(self) -> time:
        hours, minutes = self.notice_daily_at.split(":")
        return time(int(hours), int(minutes))

    def ehr_config(self) -> EhrConfig:
        """As EhrSection's, with the therapy codes of TC_RULESET_DIR's own catalog when it has
        one: a code the rules know as therapy documents a visit in the worker and `convert` alike
        (ehr/fhirprocedures.py). CatalogError (a ValueError) names the file's line."""
        config = super().ehr_config()
        own = self.ruleset_dir / CATALOG if self.ruleset_dir is not None else None
        if own is None or not own.is_file():
            return config  # the shipped catalog's codes (EhrConfig's default)
        try:
            text = own.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read {own}: {exc}") from None
        codes = frozenset(parse_catalog(text).codes())
        return config.model_copy(update={"therapy_codes": codes})


class GatewaySettings(GatewaySection, EhrSection, _FromEnvironment):
    """The MLLP gateway's settings: every section but the worker's."""


def patient_ref_pattern_from_env(environ: Mapping[str, str] | None = None) -> str:
    """TC_PATIENT_REF_PATTERN alone (audit reads it so a backfill refuses what the worker
    refuses, without requiring the worker's other settings to be valid); ValueError when it
    is not a usable pattern."""
    env = os.environ if environ is None else environ
    names = [k for k in env if k.upper() == "TC_PATIENT_REF_PATTERN"]  # as Settings: any case
    value = env[names[0]] if names else DEFAULT_PATIENT_REF_PATTERN
    try:
        compile_pattern(value)
    except ValueError as exc:
        raise ValueError(f"invalid setting TC_PATIENT_REF_PATTERN: {exc}") from None
    return value


def rule_files_from_env(environ: Mapping[str, str] | None = None) -> RuleFilesSection:
    """TC_RULESET_DIR, TC_NCCI_PTP_FILES, TC_NCCI_MUE_FILES and TC_FEE_FILES alone, validated
    as the worker validates them (`audit` reads them without requiring the worker's other
    settings to be valid); ValueError naming the variable."""
    env = os.environ if environ is None else environ
    own = set(RuleFilesSection.model_fields)
    values = {k.upper()[3:].lower(): v for k, v in env.items() if k.upper().startswith("TC_")}
    try:
        files = RuleFilesSection.model_validate({k: v for k, v in values.items() if k in own})
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        name = "TC_" + "_".join(str(x) for x in err["loc"]).upper()
        raise ValueError(f"invalid setting {name}: {err['msg']}") from None
    files.check_rule_files()
    return files


def _paths(text: str) -> list[Path]:
    return [Path(p.strip()) for p in text.split(",") if p.strip()]


S = TypeVar("S", bound=_FromEnvironment)


def read_or_exit(kind: type[S], prog: str = "therapy-compliance") -> S:
    """A program's settings from the environment, or one line per problem naming the variable
    and exit 2 (a traceback helps nobody fix a typo in TC_PARTITIONS)."""
    try:
        return kind.from_env()
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            name = (
                "TC_" + "_".join(str(x) for x in err["loc"]).upper() if err["loc"] else "settings"
            )
            print(f"{prog}: invalid setting {name}: {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def settings_from_env_or_exit(prog: str = "therapy-compliance") -> Settings:
    """The worker's and the command line's settings, or exit 2 (read_or_exit)."""
    return read_or_exit(Settings, prog)
