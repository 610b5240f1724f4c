#!/usr/bin/env bash
# What the test suite drives besides Kafka and PostgreSQL (which stack.sh installs): the
# CDC source's jars (scripts/cdc-jars.sh), the Kafka Connect worker with the Debezium JDBC
# sink that the CDC bench's smoke test runs against Weir (the Makefile's rule, as make bench
# fetches it), and Debian packages: chromium for the status page test, prometheus (and
# promtool) for the alerting tests. Idempotent; installs only what is missing, and packages
# only as root.
set -euo pipefail
bash "$(dirname "$0")/cdc-jars.sh"
make -s -C "$(dirname "$0")/.." benchmarks/connect/libs/.installed
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
exec bash "$(dirname "$0")/debian-packages.sh" test-deps "${missing[@]}"
