#!/usr/bin/env bash
# The jars of the CDC source the tests run: Kafka Connect 4.4.0 with Debezium's PostgreSQL
# connector 3.6.1.Final, as deploy/cdc/pom.xml names them, from Maven Central into
# <stack dir>/cdc/libs (Java and Maven come with scripts/stack.sh). Fetched into a scratch
# folder first, so an interrupted download never looks complete; fetched again when the
# pom changes. Idempotent.
set -euo pipefail
REPO_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
STACK_DIR=$(realpath -m -- "${WEIR_STACK_DIR:-$REPO_DIR/.stack}")
POM=$REPO_DIR/deploy/cdc/pom.xml
LIBS=$STACK_DIR/cdc/libs
stamp=$(sha256sum "$POM" | cut -d' ' -f1)
if [ -f "$LIBS/.installed" ] && [ "$(cat "$LIBS/.installed")" = "$stamp" ]; then
    exit 0
fi
mkdir -p "$STACK_DIR/cdc"
echo "[cdc] fetching Kafka Connect and the Debezium PostgreSQL connector into $LIBS"
rm -rf "$LIBS.partial"
if ! mvn -B -q -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$LIBS.partial" >"$STACK_DIR/cdc/maven.log" 2>&1; then
    tail -20 "$STACK_DIR/cdc/maven.log" >&2
    exit 1
fi
rm -rf "$LIBS"
mv "$LIBS.partial" "$LIBS"
echo "$stamp" >"$LIBS/.installed"
