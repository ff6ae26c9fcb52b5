#!/usr/bin/env bash
# The main job on the embedded defaults (see README): installs what is missing, then runs `weijian demo`.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
exec uv run --frozen weijian demo "$@"
