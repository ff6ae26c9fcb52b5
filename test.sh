#!/usr/bin/env bash
# The test suite (see README): installs what is missing, then runs pytest against a real PostGIS,
# the system Chromium and a real Jupyter kernel. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
set +e
uv run --frozen pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "no tests were collected" >&2
  exit 1
fi
exit "$rc"
