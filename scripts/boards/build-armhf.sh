#!/usr/bin/env bash
# Build (or reuse) the emulated armhf board, shaped like a Buildroot image on a Cortex-A7 SoC such
# as the RV1109: Debian's armhf busybox-static and dropbear-bin (with only the libraries dropbear
# links) unpacked into an empty root, run under qemu-arm. No Python, no sftp-server, no scp: what
# the lab can do there is exactly what an exec channel and a busybox sh can do.
# Usage: build-armhf.sh [--force]. Prints the board directory on stdout.
set -euo pipefail
BOARD_NAME=armhf
# shellcheck source=scripts/boards/common.sh
. "$(dirname "$0")/common.sh"

RECIPE="armhf bookworm busybox-static dropbear-bin v2"
begin_build qemu-arm "$RECIPE" "${1:-}"  # sets dst, stage, start (scripts/boards/common.sh)
mkdir -p "$stage/debs"
log "downloading armhf busybox-static and dropbear-bin with their dependencies"
debootstrap --arch=armhf --variant=minbase --download-only --include=busybox-static,dropbear-bin \
  bookworm "$stage/debs" "$DEBIAN_MIRROR" > "$stage/debootstrap.log" 2>&1 \
  || { tail -n 20 "$stage/debootstrap.log" >&2; exit 1; }
archives="$stage/debs/var/cache/apt/archives"
root="$stage/root"
mkdir -p "$root"
# Unpack busybox-static, dropbear-bin and the closure of their Depends, nothing else.
queue=(busybox-static dropbear-bin)
declare -A done_=()
while [ ${#queue[@]} -gt 0 ]; do
  pkg="${queue[0]}"; queue=("${queue[@]:1}")
  [ -n "${done_[$pkg]:-}" ] && continue
  done_[$pkg]=1
  deb=$(find "$archives" -name "${pkg}_*.deb" | head -n1)
  [ -n "$deb" ] || continue   # virtual or already-essential names debootstrap did not fetch
  dpkg-deb -x "$deb" "$root"
  deps=$(dpkg-deb -f "$deb" Pre-Depends Depends | sed 's/^[A-Za-z-]*: //' | tr ',' '\n' \
    | sed 's/|.*//; s/(.*//; s/:any//; s/[[:space:]]//g' | grep -v '^$' || true)
  for d in $deps; do queue+=("$d"); done
done
log "unpacked: ${!done_[*]}"
rm -rf "$stage/debs"
mkdir -p "$root/usr/bin" "$root/usr/sbin" "$root/etc/dropbear" "$root/root/.ssh" "$root/tmp" \
  "$root/proc" "$root/sys" "$root/dev" "$root/var/log" "$root/run"
chmod 1777 "$root/tmp"; chmod 700 "$root/root" "$root/root/.ssh"
# busybox provides the whole userland, as on a Buildroot image: one link per applet, in /bin.
for applet in $(chroot "$root" /bin/busybox --list); do
  [ -e "$root/bin/$applet" ] || [ -e "$root/usr/bin/$applet" ] || [ -e "$root/usr/sbin/$applet" ] \
    || ln -s busybox "$root/bin/$applet"
done
for n in null:1:3 zero:1:5 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r name major minor <<< "$n"
  mknod -m 666 "$root/dev/$name" c "$major" "$minor"
done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
printf '/bin/sh\n' > "$root/etc/shells"
printf 'rv1109-emulated\n' > "$root/etc/hostname"
key=/etc/dropbear/dropbear_ed25519_host_key
chroot "$root" /usr/bin/dropbearkey -t ed25519 -f "$key" >/dev/null 2>&1
chroot "$root" /usr/bin/dropbearkey -y -f "$key" | grep '^ssh-ed25519 ' > "$root$key.pub"  # for known_hosts
chroot "$root" /bin/sh -c 'uname -m' | grep -q '^armv7l$' \
  || { log "the board's busybox does not report armv7l"; exit 1; }
board_commit "$BOARD_NAME" "$RECIPE" "$(( $(date +%s) - start ))"
echo "$dst"
