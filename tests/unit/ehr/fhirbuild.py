"""FHIR R4 resources built for the tests, each element as its R4 definition names it (Claim.item,
Procedure.code, Bundle.entry.search ...); fhir.resources validates every one when parsed."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ehr import EhrConfig, convert_main

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
NPI = "http://hl7.org/fhir/sid/us-npi"
MRN = "MRN-FHIR-77"
NOW = datetime(2026, 3, 5, tzinfo=UTC)
LAST_UPDATED = "2026-03-04T12:00:00-05:00"


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": MRN}],
        "name": [{"family": "Doe", "given": ["Jane"]}],
    }


def practitioner() -> dict[str, Any]:
    # 1234567893: the NPI check digit example of the CMS NPI standard (Luhn with prefix 80840).
    return {
        "resourceType": "Practitioner",
        "id": "pr1",
        "identifier": [{"system": NPI, "value": "1234567893"}],
    }


def organization() -> dict[str, Any]:
    # MCB: a payer key of the shipped profile's [payers] (Medicare Part B).
    return {"resourceType": "Organization", "id": "o1", "identifier": [{"value": "MCB"}]}


def encounter() -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-03-04T09:00:00-05:00", "end": "2026-03-04T09:50:00-05:00"},
    }


def claim(*items: tuple[str, int]) -> dict[str, Any]:
    """A professional claim, each item (CPT, units) with the GP modifier (PT plan of care)."""
    return {
        "resourceType": "Claim",
        "id": "cl1",
        "meta": {"lastUpdated": LAST_UPDATED},
        "status": "active",
        "use": "claim",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/claim-type",
                    "code": "professional",
                }
            ]
        },
        "patient": {"reference": "Patient/p1"},
        "created": "2026-03-04",
        "provider": {"reference": "Practitioner/pr1"},
        "insurer": {"reference": "Organization/o1"},
        "priority": {"coding": [{"code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare B"}}],
        "item": [
            {
                "sequence": n,
                "productOrService": {"coding": [{"system": CPT, "code": code}]},
                "modifier": [{"coding": [{"system": HCPCS, "code": "GP"}]}],
                "servicedDate": "2026-03-04",
                "quantity": {"value": units},
                "encounter": [{"reference": "Encounter/e1"}],
            }
            for n, (code, units) in enumerate(items, start=1)
        ],
    }


def procedure(pid: str, code: str, minutes: int | None = None, **extra: Any) -> dict[str, Any]:
    """A completed Procedure on Encounter e1; `minutes` as performedPeriod start..end."""
    body: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": pid,
        "meta": {"lastUpdated": LAST_UPDATED},
        "status": "completed",
        "code": {"coding": [{"system": CPT, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "performer": [{"actor": {"reference": "Practitioner/pr1"}}],
    }
    if minutes is not None:
        body["performedPeriod"] = {
            "start": "2026-03-04T09:05:00-05:00",
            "end": f"2026-03-04T{9 + (5 + minutes) // 60:02d}:{(5 + minutes) % 60:02d}:00-05:00",
        }
    else:
        body["performedDateTime"] = "2026-03-04T09:05:00-05:00"
    body.update(extra)
    return body


def defibrillator_implant() -> dict[str, Any]:
    """Shaped after US Core's Procedure example "defib-implant": CPT 33249, "Insertion or
    replacement of permanent implantable defibrillator system" (CPT surgery, cardiovascular
    system: not a therapy code)."""
    return procedure("defib-implant", "33249", None)


def people() -> list[dict[str, Any]]:
    """The resources the claim refers to (a searchset's include entries)."""
    return [patient(), practitioner(), organization(), encounter()]


def collection(resources: list[dict[str, Any]], bundle_id: str = "b-1") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "collection",
        "entry": [
            {
                "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
            }
            for r in resources
        ],
    }


def convert(
    bundle: dict[str, Any], config: EhrConfig, tmp_path: Path
) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """`convert --from fhir` on the bundle: exit status, visits (stdout), stderr objects."""
    path = tmp_path / f"{bundle.get('id', 'bundle')}-{len(list(tmp_path.iterdir()))}.json"
    path.write_text(json.dumps(bundle))
    out, err = io.BytesIO(), io.StringIO()
    code = convert_main("fhir", str(path), out, err, config, now=NOW)
    visits = [json.loads(line) for line in out.getvalue().splitlines()]
    return code, visits, [json.loads(line) for line in err.getvalue().splitlines()]


BASE = "https://ehr.example.org/fhir"


def outcome(severity: str, code: str, oid: str = "search-note") -> dict[str, Any]:
    """An OperationOutcome as R4's bundle-search-warning example has it: its text quotes an MRN,
    which must never reach a warning or a rejection."""
    return {
        "resourceType": "OperationOutcome",
        "id": oid,
        "issue": [
            {
                "severity": severity,
                "code": code,
                "details": {"text": f"There is no matching patient for MRN {MRN}"},
                "diagnostics": f"searched identifier {MRN}",
            }
        ],
    }


def searchset(
    matches: list[dict[str, Any]],
    includes: list[dict[str, Any]],
    outcomes: Sequence[dict[str, Any]] = (),
    *,
    next_page: bool = False,
) -> dict[str, Any]:
    """What `GET [base]/Claim?encounter=e1&_include=...&_revinclude=Procedure:encounter`
    returns (FHIR R4 http.html "search", Bundle.type searchset): Bundle.total counts the
    matches only, Bundle.link self (and next when paged), entries with absolute fullUrls and
    search.mode match / include / outcome."""
    query = (
        f"{BASE}/Claim?encounter=Encounter/e1&_include=Claim:patient&_include=Claim:provider"
        "&_include=Claim:insurer&_include=Claim:encounter&_revinclude=Procedure:encounter"
    )
    links = [{"relation": "self", "url": query}]
    if next_page:
        links.append({"relation": "next", "url": f"{BASE}?_getpages=8f1c&_getpagesoffset=20"})

    def entry(r: dict[str, Any], mode: str) -> dict[str, Any]:
        return {
            "fullUrl": f"{BASE}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": mode},
        }

    return {
        "resourceType": "Bundle",
        "id": "8f1c2b7e-search",
        "meta": {"lastUpdated": "2026-03-04T12:00:05-05:00"},
        "type": "searchset",
        "total": len(matches),
        "link": links,
        "entry": [
            *(entry(r, "match") for r in matches),
            *(entry(r, "include") for r in includes),
            *(entry(r, "outcome") for r in outcomes),
        ],
    }
