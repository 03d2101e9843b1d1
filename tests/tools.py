"""System tools some tests need (installed by ops/test): required in CI, optional elsewhere."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def require_tool(name: str, package: str) -> str:
    """Path of `name`; fails in CI (where ops/test installs Debian package `package`) and
    skips elsewhere when it is missing."""
    exe = shutil.which(name)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; ops/test installs the Debian package {package}")
        pytest.skip(f"{name} not installed (ops/test installs the Debian package {package})")
    return exe


#: Third-party EHR samples with their provenance (../shared/samples/ehr, next to the clone).
EHR_SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "ehr"


def require_samples(path: Path = EHR_SAMPLES) -> Path:
    """`path` when it is a directory; else fails in CI (which copies ../shared next to the
    clone, so a missing directory is a broken CI setup, not a reason to skip) and skips
    elsewhere."""
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(
                f"{path} is missing: CI copies ../shared next to the clone, the EHR sample tests "
                "must run there"
            )
        pytest.skip(f"{path} not present (../shared/samples/ehr next to the clone)")
    return path
