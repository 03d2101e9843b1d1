"""A `searchset` Bundle (what a FHIR REST search returns) -> the entries to read as a collection,
the warnings, or a rejection (docs/integration-hl7.md "FHIR R4B", "Searchset bundles").

FHIR R4 Bundle.entry.search.mode (0..1, value set SearchEntryMode, required binding):
- `match` "This resource matched the search specification" and `include` "returned because it
  is referred to from another resource in the search set": both read, as in a collection (an
  included Encounter or Practitioner is what a matched Claim's references resolve to).
- absent: read as `match`, except an OperationOutcome, which is an outcome whatever its mode
  (absent, match or include: R4 search.html "Handling Errors", an OperationOutcome in a
  searchset carries information about the search, never a visit's resource). The element is 0..1, and the spec's search example (bundle-example,
  as published since DSTU2) notes servers "are not required to populate this, but should if they
  support _include"; a server without _include returns matches only.
- `outcome` "An OperationOutcome that provides additional information about the processing of a
  search": not a resource to convert. OperationOutcome.issue.severity (R4 IssueSeverity) error
  "sufficiently important to cause the action to fail" or fatal "caused the action to fail":
  the search did not complete, so its matches may be a part of the visit's resources, and a
  part read as the whole would be a wrong visit: the bundle is refused (`search_failed`).
  information/warning: a counted warning naming severity and issue code only (diagnostics and
  details text may quote an MRN, as R4's bundle-search-warning example does).
- any other value (fhir.resources does not check the binding): the bundle is refused.
No match or include entry at all (an empty page, or only outcomes): warning `search_empty`,
nothing converted (a system polling by search receives empty pages often).
A page with a `next` link (Bundle.link.relation, R4 IANA link relations) is read as it is, with
a warning: the rest of the result comes in other bundles, and a later page's procedures of the
same encounter replace this page's (one part per encounter and bundle).
"""

from __future__ import annotations

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from ehr.fhirindex import Entry
from ehr.rejection import EhrWarning, Rejection, RejectReason, WarnReason, shown

READ_MODES = ("match", "include")
#: R4 IssueSeverity codes that do not mean the search failed.
HARMLESS_SEVERITIES = ("information", "warning")


def search_entries(bundle: Bundle) -> tuple[list[Entry], list[EhrWarning]] | Rejection:
    """The match and include entries (position in the bundle kept), and the warnings; or the
    rejection of the whole bundle."""
    entries: list[Entry] = []
    warnings: list[EhrWarning] = []
    for i, e in enumerate(bundle.entry or [], start=1):
        if e.resource is None:
            continue
        mode = e.search.mode if e.search is not None else None
        where = f"entry[{i}]"
        if mode is not None and mode not in (*READ_MODES, "outcome"):
            return Rejection.one(
                RejectReason.BAD_VALUE,
                f"{where}.search.mode {shown(str(mode))} is not match, include or outcome "
                "(FHIR R4 SearchEntryMode)",
                bundle.id or None,
            )
        if isinstance(e.resource, OperationOutcome):
            # Whatever its mode (absent, match, include): an OperationOutcome in a searchset is
            # information about the search (R4 search.html "Handling Errors"), never a visit's
            # resource, and an error in it must not pass unseen.
            found = _outcome(e.resource, where, str(mode or "absent"), bundle)
            if isinstance(found, Rejection):
                return found
            warnings.append(found)
            continue
        if mode == "outcome":
            return Rejection.one(
                RejectReason.BAD_VALUE,
                f"{where} has search.mode outcome but holds a "
                f"{e.resource.get_resource_type()}, not an OperationOutcome",
                bundle.id or None,
            )
        entries.append(Entry(i, e.resource, e.fullUrl or ""))
    if not entries:
        # An empty page (nothing matched, or only outcomes): what a system polling by search
        # receives often; a counted warning with nothing converted, not a dead letter.
        warnings.append(
            EhrWarning(
                reason=WarnReason.SEARCH_EMPTY,
                detail="searchset with no match or include entry: nothing to convert",
                message_id=bundle.id or None,
            )
        )
    if any(link.relation == "next" for link in bundle.link or []):
        warnings.append(
            EhrWarning(
                reason=WarnReason.SEARCH_PAGED,
                detail="Bundle.link next: this searchset is one page of its result; the other "
                "pages are read only when sent as bundles of their own",
                message_id=bundle.id or None,
            )
        )
    return entries, warnings


def _outcome(
    outcome: OperationOutcome, where: str, mode: str, bundle: Bundle
) -> EhrWarning | Rejection:
    """search_failed for an error/fatal (or unknown) severity, else a search_outcome warning."""
    issues = ", ".join(
        f"{shown(str(x.severity), 12)}/{shown(str(x.code), 24)}" for x in outcome.issue or []
    )
    if any(x.severity not in HARMLESS_SEVERITIES for x in outcome.issue or []):
        return Rejection.one(
            RejectReason.SEARCH_FAILED,
            f"{where} OperationOutcome (search.mode {mode}) reports the search failed "
            f"(severity/code: {issues}): its matches may be incomplete",
            bundle.id or None,
        )
    return EhrWarning(
        reason=WarnReason.SEARCH_OUTCOME,
        detail=f"{where} OperationOutcome (search.mode {mode}) not converted "
        f"(severity/code: {issues or 'no issue'})",
        message_id=f"OperationOutcome/{outcome.id}" if outcome.id else None,
    )
