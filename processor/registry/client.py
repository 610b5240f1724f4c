"""The Schema Registry's HTTP API (Confluent's, as Apicurio's ``/apis/ccompat/v7`` serves it).

One small blocking client on the standard library's ``urllib``: it is asked at start (the
contracts of registry subjects, ``weir migrate``, ``weir produce``) and, at run time, only
for a schema id the cache has never seen, from a worker thread so the event loop never
waits on it (:mod:`processor.registry.schemas`). Its errors carry their verdict:

- the registry away, slow, answering 5xx or 429: :class:`RegistryUnavailable`, a stall (the
  events wait, ``/readyz`` says why, it is retried; never a dead letter);
- 401/403 or another answer only an operator can fix: :class:`RegistryRefused`, a stall;
- an id the registry does not know (404, error code 40403): :class:`SchemaNotFound`, which
  the decoder turns into that one event's dead letter;
- a subject or version that is not there: :class:`SubjectNotFound`, a configuration error.
"""

from __future__ import annotations

import base64
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from processor.core.errors import PermanentError, WeirError, describe
from processor.core.settings import SchemaRegistrySettings
from processor.core.text import printable
from processor.core.verdict import Verdict
from processor.registry.avro_references import inline

_SCHEMA_NOT_FOUND = 40403
_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# Server answers that a later attempt may not get: busy, restarting, behind a proxy.
_RETRY_STATUS = frozenset({408, 425, 429})


class RegistryError(WeirError):
    """The registry answered something other than what was asked for."""

    verdict = Verdict.STALL


class RegistryUnavailable(RegistryError):
    """The registry cannot be reached, timed out, or answered 5xx/429.

    A stall, not a plain retry: the partitions that need the schema wait, and ``/readyz``
    says why until the registry answers again.
    """


class RegistryRefused(RegistryError):
    """The registry refuses us (401, 403, another 4xx): an operator must act; a stall."""


class SchemaNotFound(PermanentError):
    """The registry has no schema of this id: the event that names it is a dead letter."""


# How deep references may refer to references before it is taken for a cycle.
MAX_REFERENCE_DEPTH = 16


class SubjectNotFound(PermanentError):
    """A configured subject or version is not in the registry: fix the configuration."""


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """One schema as the registry stores it."""

    schema_id: int
    schema_type: str  # AVRO, PROTOBUF or JSON
    text: str
    references: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class SubjectVersion:
    """One version of a subject."""

    subject: str
    version: int
    schema: RegisteredSchema


class RegistryClient:
    """Blocking calls to one registry; safe to use from several threads."""

    def __init__(self, settings: SchemaRegistrySettings) -> None:
        if settings.url is None:
            raise ValueError("schema_registry.url is not set")
        self.url = settings.url.rstrip("/")
        self._timeout = settings.timeout_s
        self._headers = {"Accept": _CONTENT_TYPE, "Content-Type": _CONTENT_TYPE}
        password = settings.resolved_password()
        token = settings.resolved_bearer_token()
        if settings.username and password is not None:
            pair = f"{settings.username}:{password}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._ssl: ssl.SSLContext | None = None
        if self.url.startswith("https://"):
            self._ssl = ssl.create_default_context(
                cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
            self._ssl.check_hostname = settings.ssl_check_hostname
            if settings.ssl_certfile and settings.ssl_keyfile:
                self._ssl.load_cert_chain(str(settings.ssl_certfile), str(settings.ssl_keyfile))

    def schema(self, schema_id: int) -> RegisteredSchema:
        """The schema of ``schema_id``; :class:`SchemaNotFound` if the registry has none."""
        answer = self._call("GET", f"/schemas/ids/{schema_id}", missing=SchemaNotFound)
        return _registered(schema_id, answer)

    def resolve(self, schema: RegisteredSchema) -> RegisteredSchema:
        """``schema`` self-contained: an Avro schema's references (named types registered
        under subjects of their own, each with its own references) fetched and inlined
        (:mod:`processor.registry.avro_references`); any other schema as it is.
        :class:`SubjectNotFound` if a referenced version is not in the registry."""
        if not schema.references or schema.schema_type != "AVRO":
            return schema
        return self._inlined(schema, MAX_REFERENCE_DEPTH)

    def _inlined(self, schema: RegisteredSchema, depth: int) -> RegisteredSchema:
        if not schema.references:
            return schema
        if depth == 0:
            raise SubjectNotFound(f"schema id {schema.schema_id}: references nested more "
                                  f"than {MAX_REFERENCE_DEPTH} deep (a cycle?)")
        referenced: dict[str, Any] = {}
        for ref in schema.references:
            found = self.version(str(ref.get("subject")), ref.get("version", "latest"))
            inner = self._inlined(found.schema, depth - 1)
            try:
                referenced[str(ref.get("name"))] = orjson.loads(inner.text)
            except orjson.JSONDecodeError:
                return schema  # not JSON: its parser says so
        try:
            document = orjson.loads(schema.text)
        except orjson.JSONDecodeError:
            return schema
        return RegisteredSchema(schema.schema_id, schema.schema_type,
                                orjson.dumps(inline(document, referenced)).decode())

    def subjects_of(self, schema_id: int) -> list[str]:
        """The subjects under which ``schema_id`` is registered."""
        answer = self._call("GET", f"/schemas/ids/{schema_id}/versions", missing=SchemaNotFound)
        return sorted({str(v["subject"]) for v in answer})

    def version(self, subject: str, version: int | str = "latest") -> SubjectVersion:
        """A version (a number, or ``latest``) of ``subject``, with its schema."""
        answer = self._call("GET", f"/subjects/{quote(subject, safe='')}/versions/{version}",
                            missing=SubjectNotFound)
        schema = _registered(int(answer["id"]), answer)
        return SubjectVersion(str(answer["subject"]), int(answer["version"]), schema)

    def versions(self, subject: str) -> list[int]:
        """Every version number of ``subject``, oldest first."""
        answer = self._call("GET", f"/subjects/{quote(subject, safe='')}/versions",
                            missing=SubjectNotFound)
        return sorted(int(v) for v in answer)

    def register(self, subject: str, text: str, schema_type: str) -> int:
        """Register ``text`` under ``subject`` (idempotent); its id."""
        body: dict[str, Any] = {"schema": text, "schemaType": schema_type}
        answer = self._call("POST", f"/subjects/{quote(subject, safe='')}/versions", body)
        return int(answer["id"])

    def set_compatibility(self, subject: str, level: str) -> None:
        """Set ``subject``'s compatibility level (BACKWARD, FORWARD, FULL, NONE, …)."""
        self._call("PUT", f"/config/{quote(subject, safe='')}", {"compatibility": level})

    def _call(self, method: str, path: str, body: Any = None,
              missing: type[PermanentError] = SubjectNotFound) -> Any:
        data = orjson.dumps(body) if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,  # noqa: S310 - http(s) only, checked by settings
                                         headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout,  # noqa: S310
                                        context=self._ssl) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise _http_error(method, path, exc, missing) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise RegistryRefused(f"schema registry {self.url}: TLS: {reason}") from None
            raise RegistryUnavailable(
                f"schema registry {self.url} did not answer {method} {path}: "
                f"{describe(reason) if isinstance(reason, BaseException) else reason}"
            ) from None
        except orjson.JSONDecodeError as exc:
            raise RegistryUnavailable(f"schema registry {self.url} answered {method} {path} "
                                      f"with something that is not JSON: {exc}") from None


def _http_error(method: str, path: str, exc: urllib.error.HTTPError,
                missing: type[PermanentError]) -> WeirError:
    try:
        detail = orjson.loads(exc.read() or b"{}")
    except (orjson.JSONDecodeError, OSError):
        detail = {}
    code = detail.get("error_code") if isinstance(detail, dict) else None
    message = detail.get("message") if isinstance(detail, dict) else None
    what = printable(f"{method} {path}: HTTP {exc.code}"
                     + (f" ({code})" if code else "") + (f": {message}" if message else ""))
    if exc.code == 404 and (missing is not SchemaNotFound or code in (None, _SCHEMA_NOT_FOUND)):
        return missing(f"the schema registry has no such schema: {what}")
    if exc.code >= 500 or exc.code in _RETRY_STATUS:
        return RegistryUnavailable(f"schema registry: {what}")
    return RegistryRefused(f"schema registry refused {what}")


def _registered(schema_id: int, answer: dict[str, Any]) -> RegisteredSchema:
    return RegisteredSchema(schema_id, str(answer.get("schemaType") or "AVRO"),
                            str(answer["schema"]), tuple(answer.get("references") or ()))
