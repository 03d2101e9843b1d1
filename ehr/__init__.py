"""EHR feeds in: HL7 v2 (DFT^P03, MDM^T02, ORU^R01) and FHIR R4B -> visit parts -> the pure join
that assembles TherapyVisitCompleted v1 events. No Kafka, no sockets, no clock; see
docs/integration-hl7.md. The public surface is re-exported here."""

from ehr.ack import ack_code_for, build_ack, rejection_ack
from ehr.convert import convert_main
from ehr.credits import CreditRefused
from ehr.fhir import FhirResult, parse_fhir, parse_resources
from ehr.hl7header import MessageHeader, read_header
from ehr.hl7text import mllp_frame, split_messages
from ehr.hl7v2 import parse_hl7v2, parse_hl7v2_parts
from ehr.join import (
    AssemblyProblem,
    ControlIdConflict,
    VisitState,
    add_part,
    assemble,
    conflict,
    event_id,
    fold,
    is_newer,
    missing_part,
)
from ehr.parts import (
    PART_ADAPTER,
    AnyPart,
    ChargeLine,
    ChargePart,
    CreditLine,
    CreditPart,
    DocumentationPart,
    PartVersion,
    VisitKey,
)
from ehr.profile import EhrConfig, Profile, ProfileError, load_config, load_profile
from ehr.rejection import EhrWarning, Problem, Rejection, RejectReason, WarnReason

__all__ = [
    "PART_ADAPTER",
    "AnyPart",
    "AssemblyProblem",
    "ChargeLine",
    "ChargePart",
    "ControlIdConflict",
    "CreditLine",
    "CreditPart",
    "CreditRefused",
    "DocumentationPart",
    "EhrConfig",
    "EhrWarning",
    "FhirResult",
    "MessageHeader",
    "PartVersion",
    "Problem",
    "Profile",
    "ProfileError",
    "RejectReason",
    "Rejection",
    "VisitKey",
    "VisitState",
    "WarnReason",
    "ack_code_for",
    "add_part",
    "assemble",
    "build_ack",
    "conflict",
    "convert_main",
    "event_id",
    "fold",
    "is_newer",
    "load_config",
    "load_profile",
    "missing_part",
    "mllp_frame",
    "parse_fhir",
    "parse_hl7v2",
    "parse_hl7v2_parts",
    "parse_resources",
    "read_header",
    "rejection_ack",
    "split_messages",
]
