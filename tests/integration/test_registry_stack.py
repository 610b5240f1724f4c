"""The local stack's schema registry (Apicurio Registry, Confluent-compatible API).

Real requests against the registry `make up` starts: Avro, Protobuf (with an import of a
well-known type) and JSON Schema register and come back by id, and a BACKWARD subject
refuses an incompatible Avro version. Subjects are unique per run, and compatibility is
set per subject, so reruns and other tests never see each other's state.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from tests.integration.conftest import REGISTRY, REGISTRY_ADDRESS, ROOT, _reachable, base_env

pytestmark = pytest.mark.integration

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

ORDER_V1 = {
    "type": "record", "name": "Order", "namespace": "weir.test",
    "fields": [{"name": "event_id", "type": "string"}, {"name": "amount", "type": "double"}],
}
# A new field without a default: v1 data cannot be read with it, so not BACKWARD.
ORDER_INCOMPATIBLE = {**ORDER_V1, "fields": [*ORDER_V1["fields"],
                                             {"name": "currency", "type": "string"}]}
# The same field with a default: BACKWARD compatible.
ORDER_V2 = {**ORDER_V1, "fields": [*ORDER_V1["fields"],
                                   {"name": "currency", "type": "string", "default": "EUR"}]}

PAGE_VIEW_PROTO = """\
syntax = "proto3";
package weir.test;

import "google/protobuf/timestamp.proto";

message PageView {
  string user_id = 1;
  string url = 2;
  google.protobuf.Timestamp occurred_at = 3;
}
"""

PAGE_VIEW_JSON = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"user_id": {"type": "string"}, "url": {"type": "string"}},
    "required": ["user_id", "url"],
}


def call(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One request to the registry: the status and the decoded JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - loopback only
        REGISTRY + path, data=data, method=method, headers={"Content-Type": CONTENT_TYPE})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"null")


@pytest.fixture(scope="module", autouse=True)
def registry_running() -> None:
    if not _reachable(REGISTRY_ADDRESS):
        pytest.fail(f"the schema registry is not answering on {REGISTRY_ADDRESS}: "
                    "run `make up` first")


@pytest.fixture
def subject() -> str:
    return f"it-{uuid.uuid4().hex[:12]}-value"


def register(subject: str, schema: str, schema_type: str) -> tuple[int, Any]:
    return call("POST", f"/subjects/{subject}/versions",
                {"schema": schema, "schemaType": schema_type})


def test_env_names_the_registry() -> None:
    port = {k: v for k, v in os.environ.items() if k == "WEIR_REGISTRY_PORT"}
    result = subprocess.run(["bash", str(ROOT / "scripts/stack.sh"), "env"],
                            capture_output=True, text=True, check=True, timeout=30,
                            env={**base_env(), **port})
    assert f"export WEIR_SCHEMA_REGISTRY__URL={REGISTRY}\n" in result.stdout


def test_avro_registers_and_comes_back_by_id(subject: str) -> None:
    status, answer = register(subject, json.dumps(ORDER_V1), "AVRO")
    assert status == 200, answer
    schema_id = answer["id"]
    status, fetched = call("GET", f"/schemas/ids/{schema_id}")
    assert status == 200, fetched
    assert json.loads(fetched["schema"]) == ORDER_V1
    assert fetched.get("schemaType", "AVRO") == "AVRO"  # Confluent leaves AVRO implicit
    # The same schema again is the same id, not a new version.
    assert register(subject, json.dumps(ORDER_V1), "AVRO") == (200, {"id": schema_id})
    assert call("GET", f"/subjects/{subject}/versions") == (200, [1])


def test_protobuf_with_a_well_known_import(subject: str) -> None:
    status, answer = register(subject, PAGE_VIEW_PROTO, "PROTOBUF")
    assert status == 200, answer
    status, fetched = call("GET", f"/schemas/ids/{answer['id']}")
    assert status == 200, fetched
    assert fetched["schemaType"] == "PROTOBUF"
    assert "google.protobuf.Timestamp occurred_at = 3;" in fetched["schema"]


def test_json_schema_registers_and_comes_back_by_id(subject: str) -> None:
    status, answer = register(subject, json.dumps(PAGE_VIEW_JSON), "JSON")
    assert status == 200, answer
    status, fetched = call("GET", f"/schemas/ids/{answer['id']}")
    assert status == 200, fetched
    assert fetched["schemaType"] == "JSON"
    assert json.loads(fetched["schema"]) == PAGE_VIEW_JSON


def test_backward_subject_refuses_an_incompatible_avro_version(subject: str) -> None:
    assert register(subject, json.dumps(ORDER_V1), "AVRO")[0] == 200
    assert call("PUT", f"/config/{subject}", {"compatibility": "BACKWARD"}) == (
        200, {"compatibility": "BACKWARD"})

    incompatible = {"schema": json.dumps(ORDER_INCOMPATIBLE), "schemaType": "AVRO"}
    status, verdict = call("POST", f"/compatibility/subjects/{subject}/versions/latest",
                           incompatible)
    assert status == 200, verdict
    assert verdict["is_compatible"] is False
    status, refusal = register(subject, json.dumps(ORDER_INCOMPATIBLE), "AVRO")
    assert status == 409, refusal
    assert "currency" in refusal["message"]

    status, answer = register(subject, json.dumps(ORDER_V2), "AVRO")
    assert status == 200, answer
    assert call("GET", f"/subjects/{subject}/versions") == (200, [1, 2])
