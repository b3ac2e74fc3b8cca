# shellcheck shell=bash
# Shared steps of the emulated-board builds (sourced by build-arm64.sh and build-armhf.sh).
# A board is a foreign-architecture root file system under ~/.cache/hwlab/boards/<name>/root, run
# through qemu-user-static via binfmt_misc. A build is staged in <name>.tmp and moved into place
# only when complete, with a stamp naming its recipe, so a half-built board is never reused.

BOARDS_CACHE="${HWLAB_BOARDS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hwlab/boards}"
export DEBIAN_MIRROR="${HWLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '%s: %s\n' "${BOARD_NAME:-board}" "$*" >&2; }

# Install the host's Debian packages that a board build needs, where missing.
ensure_host_packages() {
  local need=()
  [ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || [ -x /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
  command -v update-binfmts >/dev/null 2>&1 || need+=(binfmt-support)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v dpkg-deb >/dev/null 2>&1 || need+=(dpkg)
  [ ${#need[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "need root to apt-get install ${need[*]}"; exit 1
  fi
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
}

# Make foreign ELF binaries run: binfmt_misc mounted, the qemu interpreter for $1 enabled.
ensure_binfmt() {
  local qemu="$1"
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if [ ! -e "/proc/sys/fs/binfmt_misc/$qemu" ]; then
    update-binfmts --enable "$qemu" >/dev/null 2>&1 || update-binfmts --import "$qemu"
  fi
  grep -q '^enabled' "/proc/sys/fs/binfmt_misc/$qemu" \
    || { log "binfmt_misc: $qemu is not enabled (update-binfmts --enable $qemu)"; exit 1; }
}

# True when the board $1 is built from recipe $2 (its stamp says so).
board_current() {
  local stamp="$BOARDS_CACHE/$1/stamp"
  [ -f "$stamp" ] && [ "$(head -n1 "$stamp")" = "$2" ]
}

# Stop if anything is mounted under $1 (a running board): deleting it would reach into the host's
# /proc or /dev through the bind mounts.
refuse_if_mounted() {
  local d
  d="$(realpath -m "$1")"
  if awk -v d="$d/" 'index($2 "/", d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    log "$d has file systems mounted under it (a board is running); stop it first"; exit 1
  fi
}

# Unmount what a failed debootstrap left mounted in a staging directory $1 (its /proc, /sys).
release_mounts() {
  local d m
  d="$(realpath -m "$1")"
  awk -v d="$d/" 'index($2 "/", d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m"
  done
}

# Move the staged build $1.tmp into place as board $1 and write its stamp (recipe $2, seconds $3).
board_commit() {
  local recipe="$2" secs="$3" dst="$BOARDS_CACHE/$1"
  printf '%s\nbuilt %s in %ss on %s\n' "$recipe" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$secs" "$(uname -m)" \
    > "$dst.tmp/stamp"
  refuse_if_mounted "$dst"
  rm -rf "$dst"
  mv "$dst.tmp" "$dst"
  log "built in ${secs}s: $dst"
}

# The start every board build shares: host packages, binfmt for qemu $1 (also for a cached board:
# binfmt_misc is gone after a reboot), then either "current" (print the board, exit 0) or a fresh,
# empty staging directory. Sets dst, stage and start. Arguments: QEMU RECIPE [--force].
begin_build() {
  local qemu="$1" recipe="$2" force="${3:-}"
  dst="$BOARDS_CACHE/$BOARD_NAME"
  ensure_host_packages
  ensure_binfmt "$qemu"
  if [ "$force" != --force ] && board_current "$BOARD_NAME" "$recipe"; then
    echo "$dst"; exit 0
  fi
  # shellcheck disable=SC2034 # start is read by the build script that sourced this file
  start=$(date +%s)
  stage="$dst.tmp"
  release_mounts "$stage"
  rm -rf "$stage"
  mkdir -p "$stage"
}
