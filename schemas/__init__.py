"""Event contracts v1 (../shared/design/EVENTS.md) as pydantic v2 models."""

from schemas.alert import ComplianceAlert
from schemas.checked import VisitChecked
from schemas.deadletter import DeadLetter, SourceRecord
from schemas.decode import Rejection, decode_visit
from schemas.visit import TherapyVisitCompleted

__all__ = [
    "ComplianceAlert",
    "DeadLetter",
    "Rejection",
    "SourceRecord",
    "TherapyVisitCompleted",
    "VisitChecked",
    "decode_visit",
]
