#!/bin/sh
# hwlab Paddle.js page session on an SSH host: web_server.py and a headless Chromium, one process group.
#
# usage: web_session.sh PYTHON SERVER SITE RUNDIR LIFETIME_S BROWSER [BROWSER ARGS...]
#
# Why one script: the lab runs it as ONE transport command (`exec sh web_session.sh ...`), so the
# server, the browser and every child of the browser share that command's process group, and the
# transport's abort() (the orchestrator's Ctrl-C) kills all of them with the group. The lab stops
# it at the end of each trial by the group id written to RUNDIR/pgid.
# Bounded: a watchdog kills the whole group after LIFETIME_S seconds whatever happens to the lab
# (a lost connection leaves nothing running); web_server.py has the same --lifetime.
# Files in RUNDIR: pgid, server.out (web_server's "listening" line with its port), server.err,
# requests.jsonl (the server's request log), result.json, chromium.err, profile/ (the browser's
# user data dir, where it writes DevToolsActivePort: --remote-debugging-port=0 picks a free port).
# POSIX sh only: it travels alone to the device.
set -u
if [ "$#" -lt 6 ]; then
    echo "usage: web_session.sh PYTHON SERVER SITE RUNDIR LIFETIME_S BROWSER [ARGS...]" >&2
    exit 2
fi
py=$1
server=$2
site=$3
run=$4
life=$5
shift 5
case "$life" in
    ''|*[!0-9]*) echo "web_session.sh: LIFETIME_S must be a whole number of seconds" >&2; exit 2 ;;
esac
mkdir -p "$run/profile" || exit 2
pg=$(ps -o pgid= -p $$ 2>/dev/null | tr -d ' ')
[ -n "$pg" ] || pg=$$
echo "$pg" > "$run/pgid"
# The watchdog: `kill 0` reaches every process of this group (background jobs of a
# non-interactive sh stay in it).
( sleep "$life"; kill -s KILL 0 ) </dev/null >/dev/null 2>&1 &
"$py" "$server" --root "$site" --log "$run/requests.jsonl" --result "$run/result.json" \
    --lifetime "$life" </dev/null >"$run/server.out" 2>"$run/server.err" &
"$@" </dev/null >/dev/null 2>"$run/chromium.err" &
browser=$!
wait "$browser"
rc=$?
echo "web_session.sh: the browser exited with code $rc" >&2
exit "$rc"
