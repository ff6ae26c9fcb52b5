#!/usr/bin/env bash
# Installs what weijian needs on a Debian 12 machine: system packages (as root), uv, and the locked
# virtual environment. Sourced by ./demo.sh and ./test.sh; safe to run again (it only adds what is missing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Debian packages: PostGIS for the embedded database, Chromium for the browser tests and map
# screenshots, CJK fonts so Chinese labels render.
need_pkgs=(postgresql-15 postgresql-15-postgis-3 chromium fonts-noto-cjk util-linux)
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "[bootstrap] installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    echo "[bootstrap] missing Debian packages: ${missing[*]}" >&2
    echo "[bootstrap] ask an administrator to run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# uv, from PyPI, when it is not on PATH.
if ! command -v uv >/dev/null 2>&1; then
  echo "[bootstrap] installing uv"
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi

cd "$here"
uv sync --frozen --quiet
