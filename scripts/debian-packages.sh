#!/usr/bin/env bash
# Install Debian packages a script found missing: `debian-packages.sh LABEL PKG...`.
# Nothing to do without PKGs; as root, apt-get (updating the lists only if the first try
# fails); otherwise a message naming them and exit 1. LABEL prefixes the messages.
set -euo pipefail
label="$1"
shift
[ $# -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "[$label] missing Debian packages: $* (install them as root)" >&2
    exit 1
fi
echo "[$label] installing $* (Debian packages)"
apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "$@" >/dev/null
}
