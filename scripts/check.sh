#!/usr/bin/env bash
# The fast gate, run by .ci/run before the tests (and by the pre-commit hooks, file by file):
# formatting (ruff format --check), lint (ruff check: E, W, F, I, B, UP, RUF, D with the Google
# convention) and types (mypy with disallow_untyped_defs on every package; see pyproject.toml).
# Stops at the first failing step and prints how long each took. Needs no network once the
# virtual environment exists.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/ruff ] || [ ! -x .venv/bin/mypy ]; then
  source scripts/bootstrap.sh
fi
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
start=$EPOCHREALTIME
step() {
  local name="$1" t=$EPOCHREALTIME
  shift
  if ! "$@"; then
    echo "[gate] $name failed: see above (ruff format . and ruff check --fix . fix most style findings)" >&2
    exit 1
  fi
  echo "[gate] $name ok in $(elapsed "$t") s"
}
step format .venv/bin/ruff format --check --quiet .
step lint .venv/bin/ruff check --quiet .
step types .venv/bin/mypy
echo "[gate] passed in $(elapsed "$start") s"
