"""The settings (runtime/settings.py): one environment for every program, strict and frozen,
each program's own section."""

from __future__ import annotations

import pytest

from runtime.settings import (
    CommonSection,
    EhrSection,
    GatewaySection,
    GatewaySettings,
    Settings,
    WorkerSection,
)


def test_settings_reject_unknown_and_invalid_variables() -> None:
    with pytest.raises(ValueError, match="TC_BROKER"):
        Settings.from_env({"TC_BROKER": "x:1"})
    with pytest.raises(ValueError, match="partitions"):
        Settings.from_env({"TC_PARTITIONS": "0"})
    with pytest.raises(ValueError, match="TC_SASL_USERNAME"):
        Settings.from_env({"TC_SECURITY_PROTOCOL": "SASL_SSL"})
    with pytest.raises(ValueError, match="TC_EPISODE_HORIZON_DAYS=60 must be at least"):
        Settings.from_env({"TC_EPISODE_HORIZON_DAYS": "60"})  # below the same-day 90
    assert Settings.from_env({"TC_EPISODE_HORIZON_DAYS": "90"}).episode_horizon_days == 90
    # A send handed to the producer must resolve within a rebalance's wait (2 x 5 + 1 > 10).
    with pytest.raises(ValueError, match="TC_PRODUCER_REQUEST_TIMEOUT_S=5 is too long"):
        Settings.from_env({"TC_PRODUCER_REQUEST_TIMEOUT_S": "5"})
    assert Settings.from_env(
        {"TC_PRODUCER_REQUEST_TIMEOUT_S": "5", "TC_SESSION_TIMEOUT_S": "12"}
    ).handover_timeout_s == (11)
    s = Settings.from_env({"TC_BROKERS": "kafka://a:1, b:2", "TC_SASL_PASSWORD": "hunter2"})
    assert s.bootstrap_servers == ["a:1", "b:2"]
    assert "hunter2" not in str(s.public_view()) and "hunter2" not in repr(s)


def test_one_environment_serves_every_program_each_with_its_own_section() -> None:
    """The worker accepts the gateway's TC_MLLP_* variables and the other way round (one
    compose file or .env for both); each program validates its own sections only: a bad
    worker-only variable does not stop the gateway, nor a bad gateway one the worker."""
    env = {"TC_MLLP_PORT": "2600", "TC_BATCH_SIZE": "50", "TC_JOIN_WAIT_S": "5"}
    worker, gateway = Settings.from_env(env), GatewaySettings.from_env(env)
    assert (worker.batch_size, worker.join_wait_s, gateway.mllp_port) == (50, 5.0, 2600)
    assert not hasattr(worker, "mllp_port") and not hasattr(gateway, "batch_size")
    bad_worker = {"TC_RULESET_DIR": "/nonexistent", "TC_PRODUCER_REQUEST_TIMEOUT_S": "60"}
    assert GatewaySettings.from_env(bad_worker).mllp_port == 2575
    with pytest.raises(ValueError, match="TC_PRODUCER_REQUEST_TIMEOUT_S"):
        Settings.from_env(bad_worker)
    bad_gateway = {"TC_MLLP_CERTFILE": "/nonexistent.pem"}
    assert Settings.from_env(bad_gateway).batch_size == 500
    with pytest.raises(ValueError, match="TC_MLLP_CERTFILE"):
        GatewaySettings.from_env(bad_gateway)
    with pytest.raises(ValueError, match="TC_MLLP_PROT"):  # a typo still stops every program
        GatewaySettings.from_env({"TC_MLLP_PROT": "1"})
    with pytest.raises(ValueError, match="TC_MLLP_PROT"):
        Settings.from_env({"TC_MLLP_PROT": "1"})
    # Each section holds its own variables, none twice; the gateway's all start TC_MLLP_.
    own = {
        "common": set(CommonSection.model_fields),
        "ehr": set(EhrSection.model_fields) - set(CommonSection.model_fields),
        "worker": set(WorkerSection.model_fields) - set(CommonSection.model_fields),
        "gateway": set(GatewaySection.model_fields) - set(CommonSection.model_fields),
    }
    every = set(Settings.model_fields) | set(GatewaySettings.model_fields)
    assert sum(len(f) for f in own.values()) == len(every)
    assert all(name.startswith("mllp_") for name in own["gateway"])
    assert not any(name.startswith("mllp_") for name in every - own["gateway"])


def test_the_gateway_refuses_a_message_limit_its_inbound_topic_cannot_hold() -> None:
    with pytest.raises(ValueError, match="TC_MLLP_MAX_BYTES"):
        GatewaySettings.from_env({"TC_MLLP_MAX_BYTES": str(60 * 2**20)})
