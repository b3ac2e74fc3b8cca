#!/usr/bin/env bash
# The Paddle.js (web) path's dependencies that pyproject.toml cannot express:
#  - paddlejsconverter 1.0.8 with --no-deps: its `paddlejslite` dependency has no installable
#    distribution, and the lab only uses its convertModel step (behind lab/convert/fluid_shim.py);
#  - the npm packages the benchmark page serves from the device (lab/runners/web/package.json and
#    its lockfile; node_modules is git-ignored). No CDN at run time;
#  - Chromium, when none is found (Debian's `chromium`).
# Called by the Makefile's test stamp; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/pip" install -q --no-deps 'paddlejsconverter==1.0.8'
if ! command -v npm >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-web-deps: npm not found and not root: apt-get install npm" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends npm >/dev/null
fi
npm ci --prefix lab/runners/web --no-audit --no-fund --loglevel=error
# the browser the page runs in (lab.devices.readiness.CHROMIUM_NAMES; or point $HWLAB_CHROMIUM at one)
if [ -z "${HWLAB_CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 \
   && ! command -v google-chrome >/dev/null 2>&1 && ! command -v chrome >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-web-deps: no Chromium and not root: apt-get install chromium (or set HWLAB_CHROMIUM)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
echo "web dependencies present"
