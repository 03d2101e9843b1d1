"""What the subcommands that talk to Kafka share: settings from the environment, and one clear
line (exit 1) when the broker cannot be reached; Ctrl-C ends them quietly."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from aiokafka.errors import KafkaConnectionError

from runtime.settings import Settings, settings_from_env_or_exit


def run_with_kafka(work: Callable[[Settings], Coroutine[Any, Any, Any]]) -> int:
    settings = settings_from_env_or_exit()
    try:
        asyncio.run(work(settings))
    except KeyboardInterrupt:
        return 0
    except (OSError, KafkaConnectionError) as exc:  # aiokafka's own error at bootstrap
        print(
            f"therapy-compliance: cannot reach Kafka at {settings.brokers}: {exc}", file=sys.stderr
        )
        return 1
    return 0
