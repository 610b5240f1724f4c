#!/usr/bin/env bash
# The container image installs exactly deploy/requirements.lock: every runtime dependency
# of pyproject.toml, pinned, with hashes (pip --require-hashes refuses anything else).
#
#   scripts/lock.sh           re-resolve and rewrite the lock (needs PyPI)
#   scripts/lock.sh --check   exit 1 if the lock no longer matches pyproject.toml
#
# The lock's last line records a fingerprint of pyproject's [project] dependencies, so
# tests/deploy/test_lock.py can tell offline that the lock is stale. The resolution is
# universal (markers instead of one platform), so one lock serves amd64 and arm64 images.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

LOCK=deploy/requirements.lock
UV=${UV:-.venv/bin/uv}
PYTHON=${PYTHON:-.venv/bin/python}

fingerprint() {
    "$PYTHON" - <<'PY'
import hashlib, json, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(hashlib.sha256(json.dumps(sorted(deps)).encode()).hexdigest())
PY
}

compile() {
    "$UV" pip compile pyproject.toml --quiet --universal --python-version 3.11 \
        --generate-hashes --custom-compile-command "scripts/lock.sh" -o "$1"
    echo "# pyproject-dependencies-sha256: $(fingerprint)" >>"$1"
}

case "${1:-}" in
    --check)
        want="# pyproject-dependencies-sha256: $(fingerprint)"
        if [ "$(tail -n 1 "$LOCK")" != "$want" ]; then
            echo "[lock] $LOCK is stale: pyproject.toml's dependencies changed; run scripts/lock.sh" >&2
            exit 1
        fi
        echo "[lock] $LOCK matches pyproject.toml"
        ;;
    "")
        tmp=$(mktemp)
        trap 'rm -f "$tmp"' EXIT
        compile "$tmp"
        chmod 644 "$tmp"
        mv "$tmp" "$LOCK"
        trap - EXIT
        echo "[lock] wrote $LOCK ($(grep -c '==' "$LOCK") packages)"
        ;;
    *)
        echo "usage: scripts/lock.sh [--check]" >&2
        exit 2
        ;;
esac
