#!/usr/bin/env bash
# Regenerate the screenshot of the demo report in docs/img/ (see docs/report.md).
#   scripts/screenshot-report.sh                 # campaign demo from results/lab.sqlite (after `make demo`)
#   CAMPAIGN=x STORE=path OUT=docs/img/x.png scripts/screenshot-report.sh
# Chromium is pointed at a closed proxy port: the page cannot fetch anything, and neither can
# Chromium's own background services, so the picture is exactly what an offline reader sees.
set -euo pipefail
cd "$(dirname "$0")/.."
CAMPAIGN=${CAMPAIGN:-demo}
STORE=${STORE:-results/lab.sqlite}
OUT=${OUT:-docs/img/report-${CAMPAIGN}.png}
HTML=${HTML:-reports/${CAMPAIGN}/index.html}
SIZE=${SIZE:-1280,2600}
LAB=${LAB:-.venv/bin/lab}
CHROMIUM=${CHROMIUM:-}
if [ -z "$CHROMIUM" ]; then
  for c in /usr/lib/chromium/chromium chromium chromium-browser google-chrome; do
    if command -v "$c" >/dev/null 2>&1; then CHROMIUM=$c; break; fi
  done
fi
[ -n "$CHROMIUM" ] || { echo "screenshot-report: chromium not found (apt-get install chromium)" >&2; exit 2; }
"$LAB" --store "$STORE" report --campaign "$CAMPAIGN" -o "$HTML"
mkdir -p "$(dirname "$OUT")"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --hide-scrollbars \
  --user-data-dir="$profile" --proxy-server=127.0.0.1:9 --window-size="$SIZE" \
  --screenshot="$(realpath -m "$OUT")" "file://$(realpath "$HTML")" 2>/dev/null
echo "screenshot: $OUT (from $HTML)"
