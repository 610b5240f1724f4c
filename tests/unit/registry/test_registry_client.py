"""The registry client against a small real HTTP server: what each answer means, auth, secrets."""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest

from processor.core.errors import ConfigError
from processor.core.settings import SchemaRegistrySettings, load_settings
from processor.core.verdict import Verdict, verdict
from processor.registry.avro_references import inline
from processor.registry.client import (
    RegistryClient,
    RegistryRefused,
    RegistryUnavailable,
    SchemaNotFound,
    SubjectNotFound,
)


class Registry(http.server.BaseHTTPRequestHandler):
    """Answers from ``self.server.answers``: path → (status, body, delay in seconds)."""

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))  # type: ignore[attr-defined]
        status, body, delay = self.server.answers.get(  # type: ignore[attr-defined]
            self.path, (404, {"error_code": 40403, "message": "Schema not found"}, 0))
        time.sleep(delay)
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:
            return  # the client gave up waiting (the slow answer's test)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture
def server() -> Iterator[Any]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    httpd.answers = {}  # type: ignore[attr-defined]
    httpd.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def client(server: Any, **extra: Any) -> RegistryClient:
    url = f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7"
    return RegistryClient(SchemaRegistrySettings(url=url, timeout_s=0.5, **extra))


def test_a_schema_by_id(server: Any) -> None:
    server.answers["/apis/ccompat/v7/schemas/ids/7"] = (
        200, {"schema": '"long"', "schemaType": "AVRO"}, 0)
    found = client(server).schema(7)
    assert (found.schema_id, found.schema_type, found.text) == (7, "AVRO", '"long"')


@pytest.mark.parametrize(("status", "body", "error", "answer"), [
    (404, {"error_code": 40403, "message": "Schema not found"}, SchemaNotFound, Verdict.FATAL),
    (500, {"error_code": 50001, "message": "boom"}, RegistryUnavailable, Verdict.STALL),
    (503, {}, RegistryUnavailable, Verdict.STALL),
    (429, {}, RegistryUnavailable, Verdict.STALL),
    (401, {"error_code": 401, "message": "Unauthorized"}, RegistryRefused, Verdict.STALL),
    (403, {}, RegistryRefused, Verdict.STALL),
])
def test_each_answer_has_its_error_and_verdict(server: Any, status: int, body: Any,
                                               error: type[Exception], answer: Verdict) -> None:
    server.answers["/apis/ccompat/v7/schemas/ids/9"] = (status, body, 0)
    with pytest.raises(error) as raised:
        client(server).schema(9)
    assert verdict(raised.value) is answer
    assert str(status) in str(raised.value)


def test_a_missing_subject_is_a_configuration_fault(server: Any) -> None:
    server.answers["/apis/ccompat/v7/subjects/x-value/versions/latest"] = (
        404, {"error_code": 40401, "message": "Subject not found"}, 0)
    with pytest.raises(SubjectNotFound, match="40401"):
        client(server).version("x-value")


def test_a_registry_away_or_slow_is_unavailable(server: Any) -> None:
    server.answers["/apis/ccompat/v7/schemas/ids/3"] = (200, {"schema": "{}"}, 2.0)
    with pytest.raises(RegistryUnavailable, match="did not answer"):
        client(server).schema(3)  # slower than timeout_s
    away = RegistryClient(SchemaRegistrySettings(url="http://127.0.0.1:9/", timeout_s=0.5))
    with pytest.raises(RegistryUnavailable, match="did not answer"):
        away.schema(3)


def test_basic_auth_and_bearer_token_are_sent(server: Any, tmp_path: Path) -> None:
    server.answers["/apis/ccompat/v7/schemas/ids/1"] = (200, {"schema": '"int"'}, 0)
    client(server, username="weir", password="s3cret").schema(1)
    token = tmp_path / "token"
    token.write_text("tok-123\n")
    client(server, bearer_token_file=token).schema(1)
    basic, bearer = (h.get("Authorization") for h in server.seen)
    assert basic == "Basic " + base64.b64encode(b"weir:s3cret").decode()
    assert bearer == "Bearer tok-123"


def test_secrets_never_show(tmp_path: Path) -> None:
    settings = SchemaRegistrySettings(url="http://r:8081", username="u", password="s3cret")
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())


@pytest.mark.parametrize(("block", "words"), [
    ({"url": "ftp://r"}, "schema_registry.url"),
    ({"url": "http://r", "password": "p"}, "username is required"),
    ({"url": "http://r", "username": "u", "password": "p", "bearer_token": "t"}, "not both"),
    ({"url": "http://r", "ssl_certfile": "/nonexistent"}, "go together"),
])
def test_check_config_names_a_bad_registry_setting(example_config: Path, tmp_path: Path,
                                                    block: dict[str, Any], words: str) -> None:
    config = tmp_path / "weir.yaml"
    text = _here(example_config)
    start = text.index("schema_registry:")
    end = text.index("\n\n", start)
    body = "\n".join(f"  {k}: {orjson.dumps(v).decode()}" for k, v in block.items())
    config.write_text(text[:start] + "schema_registry:\n" + body + text[end:])
    with pytest.raises(ConfigError, match=words):
        load_settings(config)


def _here(example_config: Path) -> str:
    """The example config, its schema files named by absolute path."""
    schemas = example_config.parent.parent / "schemas"
    return example_config.read_text().replace("../schemas/", f"{schemas}/")


def test_a_framed_topic_needs_a_registry(example_config: Path, tmp_path: Path) -> None:
    text = _here(example_config)
    start = text.index("schema_registry:")
    end = text.index("\n\n", start)
    config = tmp_path / "weir.yaml"
    config.write_text(text[:start] + text[end + 2:])
    with pytest.raises(ConfigError, match=r"schema_registry\.url is required"):
        load_settings(config)


SOURCE = {"type": "record", "name": "Source", "namespace": "io.debezium",
          "fields": [{"name": "lsn", "type": ["null", "long"]},
                     {"name": "db", "type": "io.debezium.Db"}]}
DB = {"type": "enum", "name": "Db", "namespace": "io.debezium", "symbols": ["PG", "MYSQL"]}
ENVELOPE = {"type": "record", "name": "Envelope", "namespace": "shop.orders", "fields": [
    {"name": "source", "type": "io.debezium.Source"},
    {"name": "again", "type": ["null", "io.debezium.Source"]},
    {"name": "op", "type": "string"}]}


def test_an_avro_schemas_references_are_fetched_and_inlined(server: Any) -> None:
    """Types registered apart (here two deep) are defined where first used, then named:
    one self-contained schema, as fastavro and Weir's reader take it."""
    base = "/apis/ccompat/v7/subjects"
    server.answers[f"{base}/io.debezium.Db/versions/1"] = (
        200, {"subject": "io.debezium.Db", "version": 1, "id": 3,
              "schema": orjson.dumps(DB).decode()}, 0)
    server.answers[f"{base}/io.debezium.Source/versions/2"] = (
        200, {"subject": "io.debezium.Source", "version": 2, "id": 4,
              "schema": orjson.dumps(SOURCE).decode(),
              "references": [{"name": "io.debezium.Db", "subject": "io.debezium.Db",
                              "version": 1}]}, 0)
    server.answers["/apis/ccompat/v7/schemas/ids/5"] = (
        200, {"schema": orjson.dumps(ENVELOPE).decode(),
              "references": [{"name": "io.debezium.Source", "subject": "io.debezium.Source",
                              "version": 2}]}, 0)
    registry = client(server)
    resolved = registry.resolve(registry.schema(5))
    assert resolved.references == ()
    document = orjson.loads(resolved.text)
    fields = {f["name"]: f["type"] for f in document["fields"]}
    assert fields["source"]["name"] == "Source"
    assert fields["source"]["fields"][1]["type"]["symbols"] == ["PG", "MYSQL"]
    assert fields["again"] == ["null", "io.debezium.Source"]  # defined once, then named
    fastavro.parse_schema(document)
    # A referenced version the registry does not have: the schema cannot be read.
    del server.answers[f"{base}/io.debezium.Db/versions/1"]
    with pytest.raises(SubjectNotFound):
        registry.resolve(registry.schema(5))


def test_a_short_reference_is_in_the_enclosing_namespace() -> None:
    """Avro's rule: ``S`` inside namespace ``a.b`` is ``a.b.S``; its definition is placed
    at the first use, and the second use names it."""
    document = {"type": "record", "name": "E", "namespace": "a.b",
                "fields": [{"name": "s", "type": "S"}, {"name": "t", "type": ["null", "S"]}]}
    out = inline(document, {"a.b.S": {"type": "record", "name": "S",
                                      "fields": [{"name": "x", "type": "int"}]}})
    assert out["fields"][0]["type"]["name"] == "S"
    assert out["fields"][1]["type"] == ["null", "S"]
    fastavro.parse_schema(out)
