"""DocumentReference -> a document: kind from its type ([fhir.document_types]); signed when
docStatus is final/amended, status current and an authenticator is present (signed_at = date)
(ehr_ncci.md 4, docs/integration-hl7.md "FHIR").
"""

from __future__ import annotations

from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

from ehr.fhircommon import BundleReading, as_date, as_time, required_visit_key
from ehr.parts import DocumentationPart
from ehr.rejection import Problem, RejectReason, shown
from schemas.visit import Document


def documentation_from_document(reading: BundleReading, i: int, doc: DocumentReference) -> None:
    index = reading.index
    settings = reading.config.profile.fhir
    codings = list(doc.type.coding or []) if doc.type else []
    entry = next(
        (
            settings.document_types[f"{c.system}|{c.code}"]
            for c in codings
            if f"{c.system}|{c.code}" in settings.document_types
        ),
        None,
    )
    if entry is None:
        types = ", ".join(shown(f"{c.system}|{c.code}", 60) for c in codings) or "none"
        reading.reject(
            i,
            doc,
            RejectReason.UNMAPPED_CODE,
            f"DocumentReference.type ({types}) is not in the profile's [fhir.document_types]",
        )
        return
    problems: list[Problem] = []
    context_ref = doc.context.encounter[0] if doc.context and doc.context.encounter else None
    where = "DocumentReference.context.encounter"
    key = required_visit_key(index, context_ref, doc, problems, where)
    patient = index.patient_ref(doc.subject, doc)
    doc_id = (
        (doc.masterIdentifier.value if doc.masterIdentifier else None)
        or next((x.value for x in doc.identifier or [] if x.value), None)
        or doc.id
    )
    if key is None or patient is None or not doc_id:
        detail = problems[0].detail if problems else "DocumentReference.subject or its id is absent"
        reading.reject(i, doc, RejectReason.MISSING_FIELD, detail)
        return
    # Signed: docStatus final/amended, status current, an authenticator (ehr_ncci.md 4). R4B has
    # no signing time; DocumentReference.date ("when this document reference was created") is it.
    signed = doc.docStatus in ("final", "amended") and doc.status == "current"
    signer = doc.authenticator if doc.authenticator is not None else None
    # In the clinic's zone (its offset, the same instant): the signature's date is the clinic's.
    zone = reading.config.profile.zone
    signed_at = as_time(doc.date, zone) if signed and signer is not None else None
    author = index.clinician(signer or next(iter(doc.author or []), None), doc)
    period = doc.context.period if doc.context else None
    period_start = as_date(period.start, zone) if period else None
    try:
        document = Document(
            doc_id=doc_id[:128],
            kind=entry.kind,
            cpt=entry.cpt,
            signed_at=signed_at,
            author_credential=author.credential,
            document_date=period_start or as_date(doc.date, zone),
            discipline=entry.discipline if entry.kind == "referral" else None,
        )
        version = reading.version([doc])
        reading.parts.append(
            DocumentationPart(
                source="fhir",
                message_id=version.control_id,
                version=version,
                visit=key,
                patient_ref=patient,
                source_id=f"fhir-doc:{doc_id}"[:128],
                # status entered-in-error (withdrawn) or superseded (a newer one replaces it).
                status="active" if doc.status == "current" else "cancelled",
                date_of_service=period_start,
                discipline=entry.discipline,
                author_npi=author.npi,
                author_credential=document.author_credential,
                documents=[document],
            )
        )
    except ValidationError as exc:
        reading.reject(i, doc, RejectReason.BAD_VALUE, exc.errors(include_url=False)[0]["msg"])
