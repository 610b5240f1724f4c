#!/usr/bin/env bash
# Debian packages the test suite drives besides Kafka and PostgreSQL (which stack.sh
# installs): chromium for the status page test, prometheus (and promtool) for the
# alerting tests. Idempotent; installs only what is missing, and only as root.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
exec bash "$(dirname "$0")/debian-packages.sh" test-deps "${missing[@]}"
