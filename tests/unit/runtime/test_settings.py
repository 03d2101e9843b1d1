"""The settings (runtime/settings.py): one environment for every program, strict and frozen,
each program's own section."""

from __future__ import annotations

import pytest

from runtime.settings import (
    CommonSection,
    EhrSection,
    GatewaySection,
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
    compose file or .env for both); each section holds its own variables, none twice."""
    s = Settings.from_env({"TC_MLLP_PORT": "2600", "TC_BATCH_SIZE": "50", "TC_JOIN_WAIT_S": "5"})
    assert (s.mllp_port, s.batch_size, s.join_wait_s) == (2600, 50, 5.0)
    own = {
        "worker": set(WorkerSection.model_fields) - set(CommonSection.model_fields),
        "gateway": set(GatewaySection.model_fields),
        "ehr": set(EhrSection.model_fields),
        "common": set(CommonSection.model_fields),
    }
    assert sum(len(f) for f in own.values()) == len(Settings.model_fields)
    assert set().union(*own.values()) == set(Settings.model_fields)
    assert all(name.startswith("mllp_") for name in own["gateway"])
    assert not any(name.startswith("mllp_") for name in set(Settings.model_fields) - own["gateway"])
