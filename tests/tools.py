"""System tools some tests need (installed by ops/test): required in CI, optional elsewhere."""

from __future__ import annotations

import os
import shutil

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
