"""The third-party EHR samples (../shared/samples/ehr, next to the clone) are required in CI: CI
copies ../shared there, so a missing directory means the copy broke and the sample tests must
FAIL, not skip silently. Elsewhere (a developer's clone without ../shared) they skip, saying why.

The end-to-end check runs the real sample test module in a throwaway clone that has no
../shared next to it, with and without CI set."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import EHR_SAMPLES, require_samples

ROOT = Path(__file__).resolve().parents[3]


def test_the_samples_path_is_next_to_the_clone() -> None:
    assert ROOT.parent / "shared" / "samples" / "ehr" == EHR_SAMPLES


def test_a_missing_samples_dir_fails_under_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "shared/samples/ehr"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=re.escape("CI copies ../shared")):
        require_samples(missing)
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not present"):
        require_samples(missing)
    missing.mkdir(parents=True)
    assert require_samples(missing) == missing


@pytest.mark.timeout(300)
def test_the_sample_tests_fail_in_ci_without_the_samples(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    shutil.copytree(
        ROOT / "tests",
        clone / "tests",
        ignore=shutil.ignore_patterns("__pycache__", "fixtures", ".hypothesis"),
    )
    shutil.copy(ROOT / "pyproject.toml", clone / "pyproject.toml")
    assert not (tmp_path / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(clone), str(ROOT)])

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfs"]
        cmd += [
            "--basetemp",
            str(tmp_path / f"bt{len(extra)}"),
            "tests/unit/ehr/test_ehr_samples.py",
        ]
        return subprocess.run(
            cmd, cwd=clone, env={**env, **extra}, capture_output=True, text=True, timeout=240
        )

    local = run()
    assert local.returncode == 0, local.stdout + local.stderr
    assert " skipped" in local.stdout and " failed" not in local.stdout
    ci = run(CI="true")
    assert ci.returncode == 1, ci.stdout + ci.stderr
    # Failed in the module's fixture: pytest reports each test as an error; the run fails.
    assert re.search(r"\d+ (failed|errors?)", ci.stdout) and " skipped" not in ci.stdout
    assert "CI copies ../shared" in ci.stdout
