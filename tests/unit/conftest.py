from __future__ import annotations

from typing import Any

import pytest

from compliance import Engine, Finding
from tests.factories import model


@pytest.fixture(scope="session")
def engine() -> Engine:
    return Engine()


@pytest.fixture
def check(engine: Engine) -> Any:
    def _check(data: dict[str, Any]) -> list[Finding]:
        return engine.check(model(data))

    return _check


def rule_ids(findings: list[Finding]) -> list[str]:
    return [f.rule_id.value for f in findings]
