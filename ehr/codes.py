"""Recognising procedure codes and modifiers, whatever field or element they arrive in."""

from __future__ import annotations

import re

from schemas.common import Discipline

# CPT Category I: five digits; Category II: four digits + F; Category III: four digits + T;
# PLA codes: four digits + U; HCPCS Level II: a letter A-V + four digits. A price ("150.00"), an
# ICD-9 code ("626.2", "440.0") or an ICD-10 code ("J40", "M54.50") never matches.
_PROCEDURE = re.compile(r"^(?:\d{5}|\d{4}[FTU]|[A-V]\d{4})$")
_MODIFIER = re.compile(r"^[0-9A-Z]{2}$")

#: HL7 CE.3 / CWE.3 coding-system names that mean CPT or HCPCS (table 0396: C4, C5, CPTM, HCPCS,
#: HCPT, HPC; real senders also write CPT, CPT4, CPT-4; ehr_ncci.md 1.2 "normalise on input").
HL7_PROCEDURE_SYSTEMS = frozenset(
    {"", "C4", "C5", "CPT", "CPT4", "CPT-4", "CPTM", "HCPCS", "HCPT", "HPC", "HCPCS-II"}
)
#: FHIR code systems of CPT (THO: http://www.ama-assn.org/go/cpt) and HCPCS Level II (THO
#: hcpcs-Level-II, http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets; the R4 spec examples
#: also use an https variant with a page name, e.g. procedure-example-HCBS).
FHIR_CPT = "http://www.ama-assn.org/go/cpt"
FHIR_HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
_FHIR_HCPCS_PREFIX = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"

#: CMS Pub. 100-04, Ch. 5, sec. 20.1: GP = PT plan of care, GO = OT, GN = SLP.
DISCIPLINE_MODIFIERS = {"GP": Discipline.PT, "GO": Discipline.OT, "GN": Discipline.SLP}


def procedure_code(code: str, system: str = "") -> str | None:
    """The CPT/HCPCS code, upper-cased, if `code` is one under an HL7 coding system name."""
    text = code.strip().upper()
    if system.strip().upper() not in HL7_PROCEDURE_SYSTEMS:
        return None
    return text if _PROCEDURE.match(text) else None


def is_fhir_procedure_system(system: str | None) -> bool:
    return system is not None and (
        system in (FHIR_CPT, FHIR_HCPCS) or system.startswith(_FHIR_HCPCS_PREFIX)
    )


def fhir_procedure_code(code: str | None, system: str | None) -> str | None:
    if code is None or not is_fhir_procedure_system(system):
        return None
    text = code.strip().upper()
    return text if _PROCEDURE.match(text) else None


def modifier(code: str) -> str | None:
    text = code.strip().upper()
    return text if _MODIFIER.match(text) else None
