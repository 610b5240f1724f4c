#!/usr/bin/env bash
# Create (or update) Weir's two PostgreSQL roles for one schema: a migration role that owns
# the schema, and a runtime role that can only read and write rows. See
# deploy/postgres/roles.sql and docs/security.md.
#
#   WEIR_MIGRATOR_PASSWORD=… WEIR_RUNTIME_PASSWORD=… \
#     scripts/pg-roles.sh ADMIN_DSN SCHEMA [MIGRATOR_ROLE] [RUNTIME_ROLE]
#
# ADMIN_DSN connects as a superuser (or a role with CREATEROLE that owns the database).
# Passwords come from the environment, never the command line (process lists are public).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
    sed -n '2,10p' "$0" >&2
    exit 2
fi
admin_dsn=$1 schema=$2 migrator=${3:-weir_migrator} runtime=${4:-weir_runtime}
: "${WEIR_MIGRATOR_PASSWORD:?set WEIR_MIGRATOR_PASSWORD}"
: "${WEIR_RUNTIME_PASSWORD:?set WEIR_RUNTIME_PASSWORD}"

# psql's \set 'value' syntax: a quote inside is doubled.
quoted() { printf "'%s'" "${1//\'/\'\'}"; }

echo "[roles] schema $schema: owner $migrator, runtime $runtime"
# The passwords go to psql on stdin, so they never appear in a process list.
{
    echo "\\set migrator_password $(quoted "$WEIR_MIGRATOR_PASSWORD")"
    echo "\\set runtime_password $(quoted "$WEIR_RUNTIME_PASSWORD")"
    cat deploy/postgres/roles.sql
} | psql "$admin_dsn" -X -q -v ON_ERROR_STOP=1 \
    -v schema="$schema" -v migrator="$migrator" -v runtime="$runtime"
echo "[roles] done: run \`weir migrate\` as $migrator and \`weir run\` as $runtime"
