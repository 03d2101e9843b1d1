"""A rule set: the catalog, payer policies, NCCI policy statements, episode-of-care policy, KX
thresholds, CMS NCCI PTP and MUE files and fee schedules, plus the engine version, loaded and validated once, with a stable
`ruleset_version` stamped on every alert and checked record.

Directory layout (the package's `compliance/data/` is the default rule set):

    DIR/cpt_catalog.csv          the catalog               (absent: the package's file)
    DIR/payer_policies.toml      payer policies            (absent: the package's file)
    DIR/ncci_policy.toml         NCCI manual statements    (absent: the package's file)
    DIR/fee_schedule.csv         fee schedule              (absent: the package's file)
    DIR/episode_policy.toml      episode-of-care rule data (absent: the package's file)
    DIR/kx_thresholds.toml       KX modifier thresholds    (absent: the package's file)
    DIR/ncci/ptp/*.txt|*.TXT     CMS ccipra-vNNNrN-fK.TXT practitioner PTP files (optional)
    DIR/ncci/mue/*.csv           CMS MCR_MUE_PractitionerServices_Eff_MM-DD-YYYY.csv (optional)
    DIR/fees/*.csv               further fee schedule files (optional)

Files can also be given explicitly (`ptp_files`, `mue_files`, `fee_files`), in addition. A
file the loader would not read where it lies (a CMS file at the top level instead of
`ncci/ptp/`, `ncci/mue/`, `fees/`; a `.xlsx` in `ncci/mue/`; an unknown subdirectory, a folder
inside `ncci/ptp/`; a CMS file in `fees/`) is refused with a message naming where it belongs:
silently ignored, it would run without the edits the operator meant to load. Notes (README*,
NOTES*, *.md: `is_note`) are left alone everywhere.

`ruleset_version` = "rs-" + the first 16 hex digits of SHA-256 over the engine version and, per
file actually used, its role, its base name and the SHA-256 of its bytes, in a fixed order:
the same files and engine give the same id wherever they live; any byte changed changes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from compliance.catalog import Catalog, parse_catalog
from compliance.episode_policy import EpisodePolicy, parse_episode_policy
from compliance.fees import FeeSchedule, parse_fee_rows
from compliance.kx_thresholds import KxThresholds, parse_kx_thresholds
from compliance.mue import MueTable, parse_mue
from compliance.ncci_policy import NcciPolicy, parse_ncci_policy
from compliance.ncci_ptp import PTP_NAME, PtpTable, parse_ptp
from compliance.policy import PayerPolicies, parse_policies
from schemas.decode import UTF8_BOM

ENGINE_VERSION = "0.1.0"

CATALOG = "cpt_catalog.csv"
POLICIES = "payer_policies.toml"
NCCI_POLICY = "ncci_policy.toml"
FEES = "fee_schedule.csv"
EPISODE_POLICY = "episode_policy.toml"
KX_THRESHOLDS = "kx_thresholds.toml"
PTP_DIR = Path("ncci/ptp")
MUE_DIR = Path("ncci/mue")
FEES_DIR = Path("fees")


class RuleSetError(ValueError):
    """A rule set cannot be loaded; the message names the file."""


@dataclass(frozen=True, slots=True)
class RuleSet:
    catalog: Catalog
    policies: PayerPolicies
    ncci_policy: NcciPolicy
    ptp: PtpTable
    mue: MueTable
    fees: FeeSchedule
    episodes: EpisodePolicy
    kx: KxThresholds
    version: str
    #: (role, base name, sha256) of every file used, in version order (for tools and logs).
    files: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class _Source:
    role: str
    name: str
    data: bytes


def _package_file(name: str) -> _Source:
    return _Source(name, name, resources.files("compliance.data").joinpath(name).read_bytes())


def _read(path: Path, role: str) -> _Source:
    try:
        return _Source(role, path.name, path.read_bytes())
    except OSError as exc:
        raise RuleSetError(f"cannot read {path}: {exc.strerror}") from exc


_CORE = frozenset({CATALOG, POLICIES, NCCI_POLICY, FEES, EPISODE_POLICY, KX_THRESHOLDS})
#: Where each kind of file goes (directory, the suffix its loader takes).
_PLACES = ((PTP_DIR, ".txt"), (MUE_DIR, ".csv"), (FEES_DIR, ".csv"))
_MUE_NAME = re.compile(r"^MCR_MUE_", re.IGNORECASE)
#: Suffixes of rule data: a file with one of them outside its place would be ignored silently.
_DATA_SUFFIXES = frozenset({".txt", ".csv", ".toml", ".tsv", ".zip", ".xlsx", ".xls"})


def _belongs(name: str) -> str:
    """Where a file of this name belongs, said for an error message."""
    suffix = Path(name).suffix.lower()
    if suffix in (".zip", ".xlsx", ".xls"):
        return (
            "nowhere as is: unpack CMS's zip and use the text form (PTP .TXT in ncci/ptp/, "
            "MUE .csv in ncci/mue/)"
        )
    if PTP_NAME.match(name):
        return f"{PTP_DIR}/ (a CMS PTP file, .TXT)"
    if _MUE_NAME.match(name):
        return f"{MUE_DIR}/ (a CMS MUE file, .csv)"
    if suffix == ".csv":
        return f"{FEES_DIR}/ if it is a fee schedule"
    return (
        "no rule set place (not a CMS PTP/MUE file, a fee schedule or one of the top-level "
        f"files {', '.join(sorted(_CORE))}): move it out of the rule set, or name it README* / "
        "NOTES* / *.md to keep it as a note"
    )


def is_note(p: Path) -> bool:
    """A note an operator keeps beside the data (README.md, NOTES.txt, any .md): left alone
    wherever it lies, never read as rule data, never refused."""
    upper = p.name.upper()
    return p.is_file() and (
        p.suffix.lower() in (".md", ".markdown") or upper.startswith(("README", "NOTES"))
    )


def _ignored(p: Path) -> bool:
    return p.name.startswith(".") or p.name == "__pycache__" or is_note(p)


def _layout_problems(base: Path) -> list[str]:
    """Files and directories the loader would not read where they are (a CMS file at the top
    level instead of ncci/ptp/, a .xlsx in ncci/mue/, a folder inside ncci/ptp/ ...): refused,
    naming where they belong, since ignoring them would run without edits the operator meant to
    load. Hidden entries, notes (`is_note`) and top-level files with no data suffix are left
    alone."""
    problems: list[str] = []
    for p in sorted(base.iterdir()):
        if _ignored(p):  # __pycache__: the package's own data dir
            continue
        if p.is_dir():
            if p.name not in ("ncci", FEES_DIR.name):
                problems.append(
                    f"{p.name}/ is not a rule set directory (CMS files go in {PTP_DIR}/, "
                    f"{MUE_DIR}/, fee schedules in {FEES_DIR}/)"
                )
        elif p.name not in _CORE and p.suffix.lower() in _DATA_SUFFIXES:
            problems.append(f"{p.name} is at the top level: it belongs in {_belongs(p.name)}")
    ncci = base / "ncci"
    if ncci.is_dir():
        for p in sorted(ncci.iterdir()):
            if _ignored(p) or (p.is_dir() and p.name in ("ptp", "mue")):
                continue
            if p.is_dir():
                problems.append(
                    f"ncci/{p.name}/ is not a rule set directory (CMS files go in {PTP_DIR}/, "
                    f"{MUE_DIR}/)"
                )
            else:
                problems.append(f"ncci/{p.name} is not read: it belongs in {_belongs(p.name)}")
    for sub, suffix in _PLACES:
        if not (base / sub).is_dir():
            continue
        for p in sorted((base / sub).iterdir()):
            if _ignored(p):
                continue
            if p.is_dir():
                problems.append(
                    f"{sub}/{p.name}/ is a folder: sub-folders are not read; move its files up "
                    f"into {sub}/"
                )
            elif sub == FEES_DIR and (PTP_NAME.match(p.name) or _MUE_NAME.match(p.name)):
                problems.append(
                    f"{sub}/{p.name} is not a fee schedule: it belongs in {_belongs(p.name)}"
                )
            elif p.suffix.lower() != suffix:
                problems.append(
                    f"{sub}/{p.name} is not read there (only {suffix} files): it belongs in "
                    f"{_belongs(p.name)}"
                )
    return problems


def _listed(directory: Path | None, sub: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if directory is None or not (directory / sub).is_dir():
        return []
    return sorted(
        p
        for p in (directory / sub).iterdir()
        if p.is_file() and p.suffix.lower() in suffixes and not _ignored(p)
    )


def load_ruleset(
    directory: Path | str | None = None,
    *,
    ptp_files: Sequence[Path | str] = (),
    mue_files: Sequence[Path | str] = (),
    fee_files: Sequence[Path | str] = (),
) -> RuleSet:
    """Load and validate a rule set (the package's data when `directory` is None)."""
    base = Path(directory) if directory is not None else None
    if base is not None and not base.is_dir():
        raise RuleSetError(f"rule set directory {base} does not exist")
    if base is not None and (problems := _layout_problems(base)):
        raise RuleSetError(f"rule set directory {base}: " + "; ".join(problems))

    def main(name: str) -> _Source:
        if base is not None and (base / name).is_file():
            return _read(base / name, name)
        return _package_file(name)

    core = [
        main(CATALOG),
        main(POLICIES),
        main(NCCI_POLICY),
        main(FEES),
        main(EPISODE_POLICY),
        main(KX_THRESHOLDS),
    ]
    ptp = [_read(p, "ptp") for p in [*_listed(base, PTP_DIR, (".txt",)), *map(Path, ptp_files)]]
    mue = [_read(p, "mue") for p in [*_listed(base, MUE_DIR, (".csv",)), *map(Path, mue_files)]]
    fees = [_read(p, "fees") for p in [*_listed(base, FEES_DIR, (".csv",)), *map(Path, fee_files)]]
    return build_ruleset(core, ptp, mue, fees)


def build_ruleset(
    core: Sequence[_Source],
    ptp: Iterable[_Source],
    mue: Iterable[_Source],
    fees: Iterable[_Source],
) -> RuleSet:
    catalog_src, policies_src, ncci_src, fee_src, episode_src, kx_src = core
    catalog = parse_catalog(_text(catalog_src))
    policies = parse_policies(_text(policies_src))
    ncci_policy = parse_ncci_policy(_text(ncci_src))
    episodes = parse_episode_policy(_text(episode_src))
    kx = parse_kx_thresholds(_text(kx_src))
    ptp_list, mue_list, fee_list = list(ptp), list(mue), [fee_src, *fees]
    ptp_table = PtpTable([parse_ptp(s.data, s.name) for s in ptp_list], ncci_policy.ptp_edits)
    mue_table = MueTable([parse_mue(s.data, s.name) for s in mue_list])
    for s in fee_list[1:]:
        _not_cms(s)
    fee_rows = [r for s in fee_list for r in parse_fee_rows(_text(s), s.name)]
    fee_schedule = FeeSchedule(fee_rows)
    used = [
        *core,
        *sorted(ptp_list, key=_key),
        *sorted(mue_list, key=_key),
        *sorted(fee_list[1:], key=_key),
    ]
    files = tuple((s.role, s.name, hashlib.sha256(s.data).hexdigest()) for s in used)
    h = hashlib.sha256(f"engine {ENGINE_VERSION}\n".encode())
    for role, name, digest in files:
        h.update(f"{role}\t{name}\t{digest}\n".encode())
    return RuleSet(
        catalog,
        policies,
        ncci_policy,
        ptp_table,
        mue_table,
        fee_schedule,
        episodes,
        kx,
        "rs-" + h.hexdigest()[:16],
        files,
    )


#: The first line of a CMS file (ehr_ncci.md 5.1 and 5.2): PTP's AMA notice, MUE's quoted one.
_CMS_FIRST_LINES = (
    (b"CPT only copyright ", PTP_DIR, "PTP"),
    (b'"Current Procedural Terminology (CPT) codes', MUE_DIR, "MUE"),
    (b"Current Procedural Terminology (CPT) codes", MUE_DIR, "MUE"),
)


def _not_cms(s: _Source) -> None:
    """A fee file that is a CMS PTP or MUE file (by its name or its first line) is refused
    saying where it belongs, before it is decoded as UTF-8 (CMS files are Latin-1: "not UTF-8
    text" would not say what is wrong)."""
    if PTP_NAME.match(s.name) or _MUE_NAME.match(s.name):
        raise RuleSetError(f"{s.name}: not a fee schedule: it belongs in {_belongs(s.name)}")
    head = s.data.removeprefix(UTF8_BOM)
    for start, place, kind in _CMS_FIRST_LINES:
        if head.startswith(start):
            raise RuleSetError(
                f"{s.name}: not a fee schedule: its first line is a CMS {kind} file's AMA "
                f"notice; it belongs in {place}/ (under CMS's file name)"
            )


def _text(s: _Source) -> str:
    try:
        return s.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleSetError(f"{s.name}: not UTF-8 text (byte {exc.start})") from None


def _key(s: _Source) -> tuple[str, str]:
    return (s.name, hashlib.sha256(s.data).hexdigest())


def default_ruleset() -> RuleSet:
    """The package's rule set (no CMS NCCI files: only the shipped policy statements)."""
    return load_ruleset(None)
