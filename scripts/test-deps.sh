#!/usr/bin/env bash
# What the test suite drives besides Kafka and PostgreSQL (which stack.sh installs): the
# CDC source's jars (scripts/cdc-jars.sh), and Debian packages: chromium for the status
# page test, prometheus (and promtool) for the alerting tests. Idempotent; installs only
# what is missing, and packages only as root.
set -euo pipefail
bash "$(dirname "$0")/cdc-jars.sh"
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
exec bash "$(dirname "$0")/debian-packages.sh" test-deps "${missing[@]}"
