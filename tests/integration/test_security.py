"""TLS and SASL to Kafka: a second local broker with SSL and SASL_SSL (SCRAM-SHA-512) listeners,
certificates generated here; the worker works over both and fails clearly with bad credentials
or an untrusted certificate."""

from __future__ import annotations

import os
import ssl
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.factories import raw, timed_visit
from tests.integration.harness import Topics, Worker, by_topic, consume, free_port, produce

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "tc-worker", "s3cret-Pa55word"


@dataclass
class SecureBroker:
    ssl_port: int
    sasl_port: int
    cafile: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cafile))


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d: Path) -> None:
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=therapy-compliance test CA",
        cwd=d,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=d,
    )
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        cwd=d,
    )
    openssl(
        "pkcs12",
        "-export",
        "-in",
        "server.crt",
        "-inkey",
        "server.key",
        "-out",
        "server.p12",
        "-passout",
        "pass:changeit",
        "-name",
        "kafka",
        cwd=d,
    )


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    d = tmp_path_factory.mktemp("tls")
    make_certificates(d)
    port, cport, sport, saslport = free_port(), free_port(), free_port(), free_port()
    (d / "extra.properties").write_text(f"""
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport},SSL://127.0.0.1:{sport},SASL_SSL://127.0.0.1:{saslport}
advertised.listeners=PLAINTEXT://127.0.0.1:{port},SSL://127.0.0.1:{sport},SASL_SSL://127.0.0.1:{saslport}
ssl.keystore.type=PKCS12
ssl.keystore.location={d / "server.p12"}
ssl.keystore.password=changeit
ssl.key.password=changeit
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
""")
    env = {
        **os.environ,
        "KAFKA_PORT": str(port),
        "KAFKA_CONTROLLER_PORT": str(cport),
        "KAFKA_STATE_DIR": str(d / "state"),
        "KAFKA_EXTRA_PROPERTIES": str(d / "extra.properties"),
        "KAFKA_FORMAT_ARGS": f"--add-scram SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
    }
    script = str(ROOT / "ops/kafka/local-kafka")
    subprocess.run([script, "start"], env=env, check=True, timeout=180)
    try:
        yield SecureBroker(sport, saslport, d / "ca.pem")
    finally:
        subprocess.run([script, "stop"], env=env, check=False, timeout=120)


def visit(event: str) -> tuple[bytes, bytes]:
    data = timed_visit(("97110", 3, 33), ("97140", 1, 7))
    data.update(event_id=event, visit_id=f"V-{event}", patient_ref="P-tls")
    return b"P-tls", raw(data)


async def roundtrip(
    make_worker: Any,
    broker: SecureBroker,
    env: dict[str, str],
    client: dict[str, Any],
    address: str,
) -> None:
    t = Topics.unique("tls")
    worker: Worker = make_worker(t, **env)
    worker.start()
    event = f"tls-{uuid.uuid4().hex[:6]}"
    await produce(t.visits, [visit(event)], brokers=address, **client)
    recs = await consume([t.checked, t.alerts], until=2, brokers=address, **client)
    [checked] = by_topic(recs, t.checked)
    assert checked["event_id"] == event and checked["status"] == "flagged"
    assert [a["rule_id"] for a in by_topic(recs, t.alerts)] == ["TIMED_UNITS_EXCEED_MINUTES"]


@pytest.mark.asyncio
async def test_worker_over_sasl_ssl_scram_sha_512(
    make_worker: Any, secure_broker: SecureBroker
) -> None:
    address = f"127.0.0.1:{secure_broker.sasl_port}"
    env = {
        "TC_BROKERS": address,
        "TC_SECURITY_PROTOCOL": "SASL_SSL",
        "TC_SASL_MECHANISM": "SCRAM-SHA-512",
        "TC_SASL_USERNAME": USER,
        "TC_SASL_PASSWORD": PASSWORD,
        "TC_SSL_CAFILE": str(secure_broker.cafile),
    }
    client = {
        "security_protocol": "SASL_SSL",
        "ssl_context": secure_broker.context(),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": USER,
        "sasl_plain_password": PASSWORD,
    }
    await roundtrip(make_worker, secure_broker, env, client, address)


@pytest.mark.asyncio
async def test_worker_over_plain_ssl(make_worker: Any, secure_broker: SecureBroker) -> None:
    address = f"127.0.0.1:{secure_broker.ssl_port}"
    env = {
        "TC_BROKERS": address,
        "TC_SECURITY_PROTOCOL": "SSL",
        "TC_SSL_CAFILE": str(secure_broker.cafile),
    }
    client = {"security_protocol": "SSL", "ssl_context": secure_broker.context()}
    await roundtrip(make_worker, secure_broker, env, client, address)


def failed_start(make_worker: Any, **env: str) -> str:
    worker: Worker = make_worker(Topics.unique("tls-bad"), **env)
    worker.start(wait_healthy=False)
    assert worker.proc is not None
    code = worker.proc.wait(90)
    assert code == 69, worker.tail()
    return worker.log_path.read_text()


def test_bad_password_fails_clearly(make_worker: Any, secure_broker: SecureBroker) -> None:
    out = failed_start(
        make_worker,
        TC_BROKERS=f"127.0.0.1:{secure_broker.sasl_port}",
        TC_SECURITY_PROTOCOL="SASL_SSL",
        TC_SASL_USERNAME=USER,
        TC_SASL_PASSWORD="wrong-password-xyz",
        TC_SSL_CAFILE=str(secure_broker.cafile),
    )
    assert "cannot connect to Kafka" in out and f"as '{USER}'" in out
    assert "authentication failed" in out
    assert "wrong-password-xyz" not in out
    assert "Traceback" not in out


def test_untrusted_certificate_fails_clearly(make_worker: Any, secure_broker: SecureBroker) -> None:
    out = failed_start(
        make_worker, TC_BROKERS=f"127.0.0.1:{secure_broker.ssl_port}", TC_SECURITY_PROTOCOL="SSL"
    )  # system CAs do not trust the test CA
    assert "cannot connect to Kafka" in out and "TLS failed" in out
    assert "Traceback" not in out
