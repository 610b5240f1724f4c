#!/usr/bin/env bash
# Debian packages the test suite drives besides Kafka and PostgreSQL (which stack.sh
# installs): chromium for the status page test, prometheus (and promtool) for the
# alerting tests. Idempotent; installs only what is missing, and only as root.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v promtool >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "[test-deps] missing Debian packages: ${missing[*]} (install them as root)" >&2
    exit 1
fi
echo "[test-deps] installing ${missing[*]} (Debian packages)"
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}
