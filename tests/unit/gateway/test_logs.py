"""The gateway's process plumbing: aiokafka's reconnect noise is throttled, our own lines never."""

from __future__ import annotations

import logging

from gateway.logs import ClientLogThrottle


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


def test_client_messages_pass_once_per_period_with_a_count_of_the_rest() -> None:
    throttle = ClientLogThrottle(every_s=3600)
    passed = [
        throttle.filter(record("aiokafka", "Unable connect to node with id %s: %s", 1, "refused"))
        for _ in range(50)
    ]
    assert passed == [True] + [False] * 49
    assert throttle.filter(record("aiokafka.producer.sender", "Got error produce response: %s"))
    assert all(throttle.filter(record("gateway.server", "conn=1 AR")) for _ in range(5))


def test_the_count_is_reported_when_the_message_passes_again() -> None:
    throttle = ClientLogThrottle(every_s=0.0)
    first = record("aiokafka", "same")
    assert throttle.filter(first) and first.getMessage() == "same"
    throttle.every_s = 3600
    for _ in range(3):
        assert not throttle.filter(record("aiokafka", "same"))
    throttle.every_s = 0.0
    again = record("aiokafka", "same")
    assert throttle.filter(again) and again.getMessage() == "same [3 similar suppressed]"
