#!/usr/bin/env bash
# Makes the Wine the Windows CLI's tests run under (xtask/tests/it/windows.rs): Debian
# 13's Wine 10 in a Debian 13 root of its own, entered with chroot, which shares this
# machine's network (the Windows CLI reaches a test engine on 127.0.0.1). Debian 12's
# Wine 8.0 cannot load a current Rust Windows binary (its standard library calls
# ProcessPrng in bcryptprimitives.dll, which Wine 8 lacks), and Debian 13's Wine needs
# Debian 13's glibc; the machine's own packages stay as they are. ci/setup.sh runs it on
# our machines, ci.yml on GitHub's (as root both times). Idempotent: seconds when done.
#
# /proc stays bound into the root (Wine reads it): never `rm -rf` the root while it is
# (`umount ROOT/proc` first). The Wine prefix (its C: drive and registry) is made once,
# so that no test spends 7 s making its own. About a minute cold.
#
# Usage: ci/wine-root.sh   (test-support's wine.rs names the same ROOT and PREFIX)
set -euo pipefail
root=/var/lib/stigmer-wine
prefix=/opt/wineprefix
log() { printf '==> %s\n' "$*" >&2; }

if [[ ! -x "$root/usr/lib/wine/wine64" ]]; then
  log "making a Debian 13 root with Wine in $root (about a minute)"
  mirror=$(bash "$(dirname "$0")/debian-mirror.sh")
  ! mountpoint -q "$root/proc" || umount "$root/proc"
  rm -rf "$root"
  debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg trixie "$root" "$mirror" \
    >/tmp/stigmer-wine.log 2>&1 ||
    { log "debootstrap of trixie failed; see /tmp/stigmer-wine.log"; tail -20 /tmp/stigmer-wine.log >&2; exit 1; }
  mount --bind /proc "$root/proc"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # apt without a terminal says `Can not write log (Is /dev/pts mounted?)`: into the log.
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wine64 \
    >>/tmp/stigmer-wine.log 2>&1 ||
    { log "installing wine64 in $root failed; see /tmp/stigmer-wine.log"; tail -20 /tmp/stigmer-wine.log >&2; exit 1; }
  chroot "$root" apt-get clean
fi
mountpoint -q "$root/proc" || mount --bind /proc "$root/proc"
if [[ ! -e "$root$prefix/system.reg" ]]; then
  log "making the Wine prefix $root$prefix"
  chroot "$root" env WINEPREFIX="$prefix" WINEDEBUG=-all /usr/lib/wine/wine64 wineboot --init >/dev/null 2>&1
  # Until wineboot's server is gone: it writes the registry files last.
  chroot "$root" env WINEPREFIX="$prefix" /usr/lib/wine/wineserver --wait
fi
