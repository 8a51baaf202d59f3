#!/usr/bin/env bash
# Run the suite with the project virtualenv. pytest's "no tests collected" (exit 5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
"$VENV/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "run-tests: pytest collected no tests; treating that as a failure" >&2
    exit 1
fi
exit "$rc"
