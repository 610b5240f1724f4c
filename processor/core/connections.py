"""Connection arguments for every Kafka and PostgreSQL client Weir creates, in one place.

The consumer, the producers (``weir produce``, the dead-letter topic), the admin client
(``weir lag``) and the PostgreSQL pool all get their TLS and authentication from here, so a
secured deployment is configured once and cannot be half-applied. The commands' one
PostgreSQL connection (:func:`connect`) and the codecs every connection gets are here too.
"""

from __future__ import annotations

import ssl
from typing import Any

import asyncpg
import orjson
from aiokafka.helpers import create_ssl_context

from processor.core import pgtime
from processor.core.settings import KafkaSettings, PostgresSettings, Settings


def kafka_security(k: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka clients: protocol, TLS context, SASL credentials."""
    args: dict[str, Any] = {"security_protocol": k.security_protocol}
    if k.security_protocol in ("SSL", "SASL_SSL"):
        context = create_ssl_context(
            cafile=str(k.ssl_cafile) if k.ssl_cafile else None,
            certfile=str(k.ssl_certfile) if k.ssl_certfile else None,
            keyfile=str(k.ssl_keyfile) if k.ssl_keyfile else None,
        )
        context.check_hostname = k.ssl_check_hostname
        args["ssl_context"] = context
    if k.security_protocol.startswith("SASL_"):
        args["sasl_mechanism"] = k.sasl_mechanism
        args["sasl_plain_username"] = k.sasl_username
        args["sasl_plain_password"] = k.resolved_sasl_password()
    return args


def kafka_client(k: KafkaSettings) -> dict[str, Any]:
    """Bootstrap servers plus :func:`kafka_security`, for any aiokafka client."""
    return {"bootstrap_servers": k.bootstrap_servers, **kafka_security(k)}


def postgres_ssl(pg: PostgresSettings) -> ssl.SSLContext | str | bool:
    """The ``ssl`` argument for asyncpg, following libpq's sslmode meanings."""
    if pg.sslmode in ("disable", "prefer"):
        return pg.sslmode
    context = ssl.create_default_context(
        cafile=str(pg.sslrootcert) if pg.sslrootcert else None
    )
    if pg.sslcert is not None:
        context.load_cert_chain(str(pg.sslcert), str(pg.sslkey) if pg.sslkey else None)
    if pg.sslmode == "require":
        # libpq's "require": encrypted, but the server's certificate is not checked.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif pg.sslmode == "verify-ca":
        context.check_hostname = False
    return context


def postgres_client(pg: PostgresSettings) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect`` and ``asyncpg.create_pool``."""
    return {
        "password": pg.resolved_password(),
        "timeout": pg.connect_timeout_s,
        "ssl": postgres_ssl(pg),
    }


JSONB_VERSION = b"\x01"


def _encode_jsonb(value: bytes | str) -> bytes:
    # jsonb's binary form is a version byte and the JSON text: raw Kafka bytes pass as they are.
    return JSONB_VERSION + (value if isinstance(value, bytes) else value.encode())


def _decode_jsonb(data: bytes) -> object:
    return orjson.loads(data[1:])


async def register_codecs(conn: asyncpg.Connection) -> None:
    """jsonb in binary, taking bytes we already hold instead of re-encoding them; timestamptz
    taking the integers the decoder builds (``processor/core/pgtime.py``)."""
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec(
        "timestamptz", encoder=pgtime.encode, decoder=pgtime.decode, schema="pg_catalog",
        format="binary",
    )


async def connect(settings: Settings) -> asyncpg.Connection:
    """One connection for commands (migrate, lag)."""
    pg = settings.postgres
    conn: asyncpg.Connection = await asyncpg.connect(
        pg.dsn, **postgres_client(pg), server_settings={"application_name": "weir"},
    )
    await register_codecs(conn)
    return conn
