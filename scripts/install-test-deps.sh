#!/usr/bin/env bash
# Debian packages the test suite starts for real: OpenSSH server (SSH fleet tests), Chromium
# (report rendering), busybox + mksh + toybox + shellcheck (sampler.sh portability), iproute2
# (network namespaces), adb (the real adb server path), hey + wrk (the closed-loop tools of the
# coordinated-omission bench), tmux (tables in a real terminal), qemu-user-static + binfmt-support +
# debootstrap (the emulated arm64/armhf boards).
set -euo pipefail
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || need+=(openssh-client)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v busybox >/dev/null 2>&1 || need+=(busybox)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v scp >/dev/null 2>&1 || need+=(openssh-client)
command -v mksh >/dev/null 2>&1 || need+=(mksh)        # sampler.sh under an Android-like shell
command -v toybox >/dev/null 2>&1 || need+=(toybox)    # ... with toybox tools, as on Android
command -v adb >/dev/null 2>&1 || need+=(adb)          # the real adb server against the adbd double
command -v hey >/dev/null 2>&1 || need+=(hey)          # closed-loop load (bench/coordinated_omission.py)
command -v wrk >/dev/null 2>&1 || need+=(wrk)          # closed loop with its own latency correction (same bench)
command -v tmux >/dev/null 2>&1 || need+=(tmux)        # tables seen in a real 80/120-column terminal
# emulated ARM boards (tests/boards; scripts/boards/build-*.sh build them once into ~/.cache/hwlab/boards)
[ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
command -v update-binfmts >/dev/null 2>&1 || need+=(binfmt-support)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: need root to apt-get install ${need[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "test dependencies present"
