"""Encrypted and authenticated connections, least privilege, no secrets in output (issue 9).

A private stack (its own Kafka with a SASL_SSL listener, its own PostgreSQL with TLS) is
started by `scripts/stack.sh` with `WEIR_STACK_TLS_DIR`, on free ports, with certificates
made here by trustme; the shared stack is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.integration.conftest import PG_DSN, ROOT, Harness, as_role, base_env, two_roles
from tests.integration.servers import free_port

SASL_PASSWORD = "sasl-" + uuid.uuid4().hex
PG_PASSWORD = "weir"  # the stack's own superuser password (not a secret, see stack.sh)


@dataclass
class SecureStack:
    dir: Path
    certs: Path
    kafka_sasl: str
    pg_port: int

    def harness(self, tmp_path: Path, *, mechanism: str = "SCRAM-SHA-512",
                password: str = SASL_PASSWORD, cafile: Path | None = None) -> Harness:
        return Harness(
            tmp_path,
            dsn=f"postgresql://weir@127.0.0.1:{self.pg_port}/weir",
            kafka={"bootstrap_servers": self.kafka_sasl, "security_protocol": "SASL_SSL",
                   "sasl_mechanism": mechanism, "sasl_username": "weir",
                   "ssl_cafile": str(cafile or self.certs / "ca.pem")},
            postgres={"sslmode": "verify-full", "sslrootcert": str(self.certs / "ca.pem")},
            env={"WEIR_KAFKA__SASL_PASSWORD": password,
                 "WEIR_POSTGRES__PASSWORD": PG_PASSWORD},
            sql_dsn=(f"postgresql://weir:{PG_PASSWORD}@127.0.0.1:{self.pg_port}/weir"
                     "?sslmode=require"),
        )


@pytest.fixture(scope="module")
def secure_stack() -> Iterator[SecureStack]:
    root = Path(tempfile.mkdtemp(prefix="weir-secure-"))
    certs = root / "certs"
    certs.mkdir()
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(certs / "ca.pem"))
    server.private_key_pem.write_to_path(str(certs / "server-key.pem"))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(certs / "server.pem"), append=i > 0)
    ports = {"WEIR_KAFKA_PORT": free_port(), "WEIR_KAFKA_CONTROLLER_PORT": free_port(),
             "WEIR_KAFKA_SASL_PORT": free_port(), "WEIR_PG_PORT": free_port()}
    env = {**base_env(), **{k: str(v) for k, v in ports.items()},
           "WEIR_STACK_DIR": str(root / "stack"), "WEIR_STACK_TLS_DIR": str(certs),
           "WEIR_STACK_REGISTRY": "0",  # the shared stack's registry serves any test
           "WEIR_KAFKA_SASL_PASSWORD": SASL_PASSWORD}
    up = subprocess.run(["bash", str(ROOT / "scripts/stack.sh"), "up"], env=env,
                        capture_output=True, text=True, timeout=600, check=False)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield SecureStack(root, certs, f"127.0.0.1:{ports['WEIR_KAFKA_SASL_PORT']}",
                          ports["WEIR_PG_PORT"])
    finally:
        subprocess.run(["bash", str(ROOT / "scripts/stack.sh"), "clean"], env=env,
                       capture_output=True, timeout=300, check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_end_to_end_over_sasl_ssl_and_tls(secure_stack: SecureStack, tmp_path: Path) -> None:
    h = secure_stack.harness(tmp_path)
    h.migrate()
    h.produce(3000)
    run = h.start("run", "--until-caught-up")
    assert run.wait(180) == 0
    assert h.scalar("SELECT count(*) FROM orders") == 1500
    assert h.scalar("SELECT count(*) FROM page_views") == 1500
    h.env["WEIR_KAFKA__SASL_MECHANISM"] = "PLAIN"  # the other mechanism, same listener
    lag = h.weir("lag", "--json")
    assert lag.returncode == 0, lag.stderr
    assert '"lag": 0' in lag.stdout
    secrets = [SASL_PASSWORD]
    outputs = [h.weir("check-config").stdout, lag.stdout, lag.stderr,
               (tmp_path / "run.log").read_text()]
    for text in outputs:
        for secret in secrets:
            assert secret not in text


def test_dead_letter_topic_over_sasl_ssl(secure_stack: SecureStack, tmp_path: Path) -> None:
    """The dead-letter producer and `weir dlq` use the consumer's TLS and SASL settings."""
    h = secure_stack.harness(tmp_path)
    h.env["WEIR_DEAD_LETTERS__TOPIC_ENABLED"] = "true"
    h.migrate()  # creates the dead-letter topics over SASL_SSL
    h.produce(1000, "--invalid-ratio", "0.05")
    run = h.start("run", "--until-caught-up")
    assert run.wait(180) == 0
    invalid = sum(1 for a in h.acks() if "invalid" in a)
    assert invalid
    assert h.scalar("SELECT count(*) FROM weir_dead_letters") == 0  # all went to the topic
    listed = h.weir("dlq", "list", "--limit", "1000")
    assert f"{invalid} dead letter(s)" in listed.stdout, listed.stderr
    assert SASL_PASSWORD not in (tmp_path / "run.log").read_text()


def test_wrong_password_or_untrusted_certificate_fails_fast(
    secure_stack: SecureStack, tmp_path: Path
) -> None:
    wrong = secure_stack.harness(tmp_path / "pw", password="not-the-password")
    started = time.monotonic()
    result = wrong.weir("lag", timeout=120)
    assert result.returncode != 0
    assert "not-the-password" not in result.stdout + result.stderr
    other_ca = trustme.CA()
    untrusted = tmp_path / "other-ca.pem"
    other_ca.cert_pem.write_to_path(str(untrusted))
    bad_ca = secure_stack.harness(tmp_path / "ca", cafile=untrusted)
    result_ca = bad_ca.weir("lag", timeout=120)
    assert result_ca.returncode != 0
    bad_pg = secure_stack.harness(tmp_path / "pg")
    bad_pg.env["WEIR_POSTGRES__PASSWORD"] = "wrong-pg-password"
    migrate = bad_pg.weir("migrate", timeout=120)
    assert migrate.returncode != 0
    assert "password authentication failed" in migrate.stdout + migrate.stderr
    assert "wrong-pg-password" not in migrate.stdout + migrate.stderr
    # PostgreSQL's certificate is verified too: another CA's bundle is refused.
    bad_pg_ca = secure_stack.harness(tmp_path / "pgca")
    bad_pg_ca.env["WEIR_POSTGRES__SSLROOTCERT"] = str(untrusted)
    migrate_ca = bad_pg_ca.weir("migrate", timeout=120)
    assert migrate_ca.returncode != 0
    assert "certificate verify failed" in migrate_ca.stdout + migrate_ca.stderr
    # Fail fast: four failed commands, no retry storm (generous for a loaded machine).
    assert time.monotonic() - started < 150


def test_runtime_role_writes_rows_but_cannot_create_or_drop(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    with two_roles(h) as (migrator, runtime, suffix):
        as_role(h, migrator, "m-" + suffix)
        h.migrate()
        # Event times over the last three days: the runtime role needs partitions made on
        # demand, through the functions the migrator owns.
        h.produce(2000, "--spread-days", "3")
        as_role(h, runtime, "r-" + suffix)
        run = h.start("runtime", "--until-caught-up")
        assert run.wait(120) == 0
        assert h.scalar("SELECT count(*) FROM orders") == 1000
        assert h.scalar("SELECT count(*) FROM orders_default") == 0
        assert h.scalar("SELECT count(DISTINCT tableoid) FROM orders") >= 3
        log = (tmp_path / "runtime.log").read_text()
        assert "r-" + suffix not in log  # the runtime password never reaches the logs
        assert "m-" + suffix not in log
        address = PG_DSN.split("@")[1]
        as_runtime = Harness(tmp_path / "probe",
                             dsn=f"postgresql://{runtime}:r-{suffix}@{address}")
        for statement in (f"CREATE TABLE {h.schema}.evil (a int)",
                          f"DROP TABLE {h.schema}.orders",
                          f"DROP TABLE {h.schema}.orders_default",
                          f"ALTER TABLE {h.schema}.orders ADD COLUMN evil int",
                          f"TRUNCATE {h.schema}.orders"):
            with pytest.raises(Exception, match=r"permission denied|must be owner"):
                as_runtime.sql(statement)
        assert h.scalar("SELECT count(*) FROM orders") == 1000


def test_hostile_column_names_are_rejected(tmp_path: Path) -> None:
    schema = tmp_path / "evil.json"
    schema.write_text('{"type": "object", "properties": {"a\\"; DROP TABLE x; --": '
                      '{"type": "string"}}}')
    h = Harness(tmp_path, event_types={"order": {"schema_file": str(schema),
                                                 "id_field": None, "time_field": None,
                                                 "key_field": None}})
    result = h.weir("check-config")
    assert result.returncode == 2
    assert "is not a safe column name" in result.stderr
