"""What the EHR unit tests share: the fixture folder, one converter config (the patient key is
a test key, so patient refs are stable across tests) and the hl7apy check of built messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from ehr import load_config

FIX = Path(__file__).resolve().parents[2] / "fixtures/ehr"
CONFIG = load_config(b"test-key-0123456789abcdef")


def strict(raw: bytes) -> Any:
    """The message parsed and validated by hl7apy at STRICT v2.5.1 (raises if it is not valid)."""
    msg = parse_message(raw.decode(), find_groups=True, validation_level=VALIDATION_LEVEL.STRICT)
    msg.validate()
    return msg
