"""The integration profile: local code tables and choices, loaded from TOML and validated once.

`ehr/profile.toml` holds the defaults. A bad file raises `ProfileError` whose message names the
file and the entry (`departments.RAD: Input should be 'PT', 'OT' or 'SLP'`).
"""

from __future__ import annotations

import codecs
import tomllib
from functools import cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails

from compliance.catalog import load_catalog
from schemas.common import (
    Credential,
    Discipline,
    DocumentKind,
    Npi,
    OpaqueRef,
    PayerKind,
    ProcedureCode,
    UnitRule,
)

DEFAULT_PROFILE_PATH = Path(__file__).with_name("profile.toml")

_CONF = ConfigDict(frozen=True, extra="forbid")
#: A profile must name its senders' zone: a default would turn 14:20 in Wisconsin into 14:20Z.
MISSING_TIMEZONE = (
    "missing: set the IANA zone of the senders' clock times (e.g. timezone = "
    '"America/Chicago"; write timezone = "UTC" only if they send UTC)'
)
Code = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7E]+$")]


class ProfileError(ValueError):
    """The profile file is unreadable or an entry is invalid; the message names the entry."""


class PayerEntry(BaseModel):
    model_config = _CONF
    payer_id: OpaqueRef
    kind: PayerKind
    unit_rule: UnitRule | None = None


class DocumentTypeEntry(BaseModel):
    model_config = _CONF
    kind: DocumentKind
    discipline: Discipline | None = None
    cpt: ProcedureCode | None = None


class Transactions(BaseModel):
    model_config = _CONF
    charge: list[Code] = ["CG"]
    credit: list[Code] = ["CD"]
    ignored: list[Code] = ["AJ", "CO", "PY"]


class Documents(BaseModel):
    model_config = _CONF
    signed_statuses: list[Code] = ["LA", "AU"]
    withdrawn_availability: list[Code] = ["CA", "OB"]
    types: dict[Code, DocumentTypeEntry] = {}


#: ObxCodes fields that are settings, not OBX-3 codes with a meaning.
_OBX_SETTINGS = ("coding_systems", "result_status", "ignored_codes")


class ObxCodes(BaseModel):
    model_config = _CONF
    coding_systems: list[str] = ["L", "99TC"]
    result_status: list[Code] = ["F", "C"]
    #: OBX-3 codes of minute-valued observations that are not therapy minutes (travel time,
    #: documentation time): skipped. Any other OBX with a minutes unit (OBX-6 `min`) and a code
    #: the profile does not know rejects the note (unmapped_code), never skipped in silence.
    ignored_codes: list[Code] = []
    total_timed_minutes: Code = "TC-TIMED-MIN"
    total_treatment_minutes: Code = "TC-TREAT-MIN"
    cpt_minutes: Code = "TC-CPT-MIN"
    cpt_assistant_minutes: Code = "TC-CPT-ASST-MIN"
    document_cpt: Code = "TC-DOC-CPT"
    plan_start: Code = "TC-PLAN-START"
    plan_end: Code = "TC-PLAN-END"
    sent_to_certifier_at: Code = "TC-SENT-CERTIFIER"
    verbal_order_at: Code = "TC-VERBAL-ORDER"
    covers_from: Code = "TC-CERT-FROM"
    covers_through: Code = "TC-CERT-THROUGH"
    delay_reason_documented: Code = "TC-CERT-DELAY"
    referral_discipline: Code = "TC-REFERRAL-DISC"
    episode_start_date: Code = "TC-EPISODE-START"

    def names_by_code(self) -> dict[str, str]:
        """OBX-3 code -> the profile's name for it (one code may not serve two meanings)."""
        out: dict[str, str] = {}
        for name, value in self:
            if name in _OBX_SETTINGS:
                continue
            assert isinstance(value, str)
            out[value] = name
        return out


class FhirSettings(BaseModel):
    model_config = _CONF
    default_facility: OpaqueRef = "FHIR"
    minutes_extension: str = "urn:therapy-compliance:fhir:minutes"
    total_timed_minutes_extension: str = "urn:therapy-compliance:fhir:total-timed-minutes"
    total_treatment_minutes_extension: str = "urn:therapy-compliance:fhir:total-treatment-minutes"
    chargeitem_modifier_extension: str = "urn:therapy-compliance:fhir:modifier"
    encounter_identifier_systems: dict[str, OpaqueRef] = {}
    document_types: dict[str, DocumentTypeEntry] = {}
    #: Codes whose completed Procedures document a therapy visit besides the catalog's
    #: (EhrConfig.therapy_codes): a local or new therapy code the catalog does not list yet.
    therapy_procedure_codes: list[ProcedureCode] = []


class Profile(BaseModel):
    """Not strict: TOML already types its values, and enums arrive as strings."""

    model_config = _CONF

    #: Required, no default: the clock of DTM values without an offset decides the local dates
    #: the rules count (signatures within 14/30 days); UTC must be written, never assumed.
    timezone: str
    default_charset: str = "utf-8"
    hl7_versions: list[str] = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"]
    accepted_facilities: list[Code] = []
    visit_id: Literal["clear", "hashed"] = "clear"
    #: PV1-2 patient classes (HL7 table 0004) billed as one account over many days (`R`
    #: recurring patient): their visits are keyed by account + date of service.
    recurring_patient_classes: list[Code] = ["R"]
    transactions: Transactions = Transactions()
    documents: Documents = Documents()
    departments: dict[Code, Discipline] = {}
    payers: dict[Code, PayerEntry] = {}
    default_payer: PayerEntry | None = None
    credentials: dict[Code, Credential] = {}
    providers: dict[Npi, Credential] = {}
    patient_authority_aliases: dict[str, str] = {}
    obx: ObxCodes = ObxCodes()
    fhir: FhirSettings = FhirSettings()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("default_charset")
    @classmethod
    def _known_charset(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown charset {value!r}") from None
        return value

    @field_validator("obx")
    @classmethod
    def _distinct_obx_codes(cls, value: ObxCodes) -> ObxCodes:
        names = [n for n, _ in value if n not in _OBX_SETTINGS]
        if len(value.names_by_code()) != len(names):
            raise ValueError("two OBX meanings share one code")
        both = sorted(set(value.ignored_codes) & set(value.names_by_code()))
        if both:
            raise ValueError(f"ignored_codes lists a code the profile reads: {', '.join(both)}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def credential(self, degree: str) -> Credential | None:
        """A sender's degree text -> contract credential (the [credentials] aliases first)."""
        text = degree.strip().upper()
        if not text:
            return None
        if text in self.credentials:
            return self.credentials[text]
        try:
            return Credential(text)
        except ValueError:
            return None


@cache
def catalog_codes() -> frozenset[str]:
    """Every code of the shipped CPT/HCPCS catalog (compliance/data/cpt_catalog.csv): the therapy
    codes, deleted ones included (the rules judge a deleted code; it is still therapy)."""
    return frozenset(load_catalog().codes())


class EhrConfig(BaseModel):
    """What the parsers need: the profile, the patient_ref key (never logged or printed) and the
    therapy codes (the rule set's catalog; the worker and `convert` pass TC_RULESET_DIR's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: Profile
    patient_key: bytes = Field(repr=False, min_length=16)
    therapy_codes: frozenset[str] = Field(default_factory=catalog_codes, repr=False)

    def is_therapy_code(self, code: str) -> bool:
        """A code whose completed FHIR Procedure documents a therapy visit: the catalog's, or
        one of the profile's [fhir] therapy_procedure_codes."""
        return code in self.therapy_codes or code in self.profile.fhir.therapy_procedure_codes


def load_profile(path: Path | None = None) -> Profile:
    """Read and validate a profile file (default: the shipped `ehr/profile.toml`)."""
    path = path or DEFAULT_PROFILE_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"ehr profile {path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"ehr profile {path}: not valid TOML: {exc}") from None
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(file)'}: {_message(err)}"
            for err in exc.errors(include_url=False)
        )
        raise ProfileError(f"ehr profile {path}: {problems}") from None


def _message(err: ErrorDetails) -> str:
    if err["type"] == "missing" and err["loc"] == ("timezone",):
        return MISSING_TIMEZONE
    return err["msg"]


def load_config(patient_key: bytes | str, path: Path | None = None) -> EhrConfig:
    """Profile + key, with the shipped catalog's therapy codes (a rule set's own catalog:
    `runtime.settings.Settings.ehr_config`). The key must be at least 16 bytes (HMAC-SHA256,
    RFC 2104 sec. 3)."""
    key = patient_key.encode() if isinstance(patient_key, str) else patient_key
    if len(key) < 16:
        raise ProfileError("the patient_ref key must be at least 16 bytes")
    return EhrConfig(profile=load_profile(path), patient_key=key)
