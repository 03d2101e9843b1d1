from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import BROKERS, Topics, Worker, broker_reachable


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session", autouse=True)
def _broker() -> None:
    if not broker_reachable():
        pytest.fail(
            f"no Kafka broker at {BROKERS}: integration tests need the real local broker; "
            "run them with ops/test, or start it with ops/kafka/local-kafka start",
            pytrace=False,
        )


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[object]:
    workers: list[Worker] = []

    def _make(topics: Topics, app_id: str | None = None, **env: str) -> Worker:
        w = Worker(topics, tmp_path, app_id or f"tc-test-{uuid.uuid4().hex[:8]}", dict(env))
        workers.append(w)
        return w

    yield _make
    for w in workers:
        w.stop()


REPORT: list[str] = []


@pytest.fixture
def report() -> object:
    """Tests append figures worth reading (duplicates, shutdown times) to the run's summary."""
    return REPORT.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("reliability figures")
        for line in REPORT:
            terminalreporter.write_line(line)
