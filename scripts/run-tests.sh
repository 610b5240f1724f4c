#!/usr/bin/env bash
# Run the whole suite. The local stack must be up (`make test` brings it up first).
# pytest exits 5 when it collected no test at all: for this project that is a broken suite
# (a bad path, an import error hiding tests), never a pass, so it fails loudly here.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bash scripts/test-deps.sh
.venv/bin/pytest -ra --durations=10 "$@" tests
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "[test] pytest collected no tests: treating as a failure" >&2
    exit 1
fi
exit "$rc"
