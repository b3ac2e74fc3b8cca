#!/usr/bin/env bash
# A real Paddle Lite `paddle_lite_opt` for the tests and for `lab models build --lite-target`.
# Why a separate venv: paddlelite has no cp311 wheel; 2.13rc0 ships a cp310 manylinux wheel
# (docs/reference: paddle.md §2.6), and this machine kind has pyenv interpreters.
# Usage: scripts/setup-lite-opt.sh [VENV_DIR]   (default .venv-lite, git-ignored)
# Prints the opt path on success; exits non-zero with one line saying why otherwise.
set -euo pipefail
VENV="${1:-.venv-lite}"
WHEEL_VERSION="${PADDLELITE_VERSION:-2.13rc0}"
OPT="$VENV/bin/paddle_lite_opt"
if [[ -x "$OPT" ]] && "$VENV/bin/python" -c "import paddlelite.lite, numpy" >/dev/null 2>&1; then
  echo "$OPT"; exit 0
fi
PY=""
for cand in "${HWLAB_LITE_PYTHON:-}" /root/.pyenv/versions/3.10.*/bin/python python3.10; do
  [[ -n "$cand" ]] || continue
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
    PY="$cand"; break
  fi
done
if [[ -z "$PY" ]]; then
  echo "setup-lite-opt: no Python 3.10 interpreter (paddlelite $WHEEL_VERSION has cp310 wheels only); set HWLAB_LITE_PYTHON" >&2
  exit 1
fi
if [[ "$(uname -m)" != "x86_64" ]]; then
  echo "setup-lite-opt: paddlelite wheels exist for x86_64 only, this is $(uname -m)" >&2
  exit 1
fi
rm -rf "$VENV"
"$PY" -m venv "$VENV"
# numpy: lite_runner.py (the paddle-lite-python backend) feeds inputs with it; the wheel omits it
"$VENV/bin/pip" install -q --disable-pip-version-check "paddlelite==$WHEEL_VERSION" "numpy<2" >&2
"$VENV/bin/python" -c "import paddlelite.lite, numpy" >&2
echo "$OPT"
