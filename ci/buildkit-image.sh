#!/usr/bin/env bash
# Builds a BuildKit image for buildx's docker-container driver (`docker buildx create
# --driver docker-container --driver-opt image=IMAGE`), the builder GitHub's
# docker/setup-buildx-action makes and the only one here that can push by digest. The
# moby/buildkit image cannot be pulled here and no Debian package ships buildkitd, but
# Debian 13's golang-github-docker-docker-dev carries BuildKit's source (the version
# docker.io 26.1 bundles) with its Go libraries as Debian packages: buildkitd and
# buildctl are compiled from those with trixie's Go 1.24, offline but for the Debian
# mirror, and put FROM scratch with Debian 12's runc. Nothing is installed: everything
# happens under WORKDIR, which is removed once the image is in the engine.
#
# Four imports have no Debian package (the gha and azblob cache backends, the
# fuse-overlayfs snapshotter, go-systemd's /v22 path): the build leaves the first three
# out (patched below; GitHub's cache service does not exist here anyway) and links the
# last. Two small leaf libraries exist only in sid. About 3 minutes cold on 2 cores.
#
# Usage: ci/buildkit-image.sh WORKDIR IMAGE   (DOCKER_HOST names the engine to load it in)
set -euo pipefail
work=$1 image=$2
mirror=${MIRROR:-$(bash "$(dirname "$0")/debian-mirror.sh")}
log() { printf '==> %s\n' "$*" >&2; }
mkdir -p "$work" && cd "$work"
: >empty-status
aptcfg() { # suite -> apt options (own lists/cache, empty dpkg status: full dependency closure)
  local s=$1 d=$work/apt-$1
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $s main" >"$d/sources.list"
  echo "-o Dir::Etc::SourceList=$d/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$d/lists -o Dir::Cache=$d/cache -o APT::Sandbox::User=root -o Dir::State::status=$work/empty-status"
}
T=$(aptcfg trixie) S=$(aptcfg sid) B=$(aptcfg bookworm)
log "apt update (trixie, sid, bookworm)"
for o in "$T" "$S" "$B"; do apt-get -qq $o update; done
# cmd/buildkitd + cmd/buildctl imports beyond golang-github-docker-docker-dev's own closure.
extra=(golang-github-agext-levenshtein-dev golang-github-aws-aws-sdk-go-v2-dev
  golang-github-containerd-nydus-snapshotter-dev golang-github-containerd-stargz-snapshotter-dev
  golang-github-coreos-go-systemd-dev golang-github-gofrs-flock-dev golang-github-google-shlex-dev
  golang-github-mitchellh-hashstructure-v2-dev golang-github-pkg-profile-dev
  golang-github-spdx-tools-golang-dev golang-github-tonistiigi-vt100-dev)
closure=$(apt-cache $T depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances golang-github-docker-docker-dev "${extra[@]}" | grep -E '^golang-.*-dev$' | sort -u |
  grep -vx 'golang-github-golang-protobuf-1-3-dev')   # conflicts with -1-5-dev (same directory)
mkdir -p debs root
log "downloading $(wc -w <<<"$closure") trixie -dev packages + Go 1.24"
(cd debs && apt-get -qq $T download $closure golang-1.24-go golang-1.24-src &&
  # Not in trixie: two small leaf libraries from sid.
  apt-get -qq $S download golang-github-package-url-packageurl-go-dev golang-github-tonistiigi-go-archvariant-dev &&
  apt-get -qq $B download runc libseccomp2)
log "unpacking"
for f in debs/golang-*.deb; do dpkg-deb -x "$f" root; done
R=$work/root O=$work/overlay
export GOROOT=$R/usr/lib/go-1.24 PATH=$R/usr/lib/go-1.24/bin:$PATH GOPATH=$O:$R/usr/share/gocode
export GO111MODULE=off GOFLAGS= GOTOOLCHAIN=local GOPROXY=off CGO_ENABLED=0 GOCACHE=$work/gocache
# Overlay: a patched copy of BuildKit (no gha/azblob cache backends, no fuse-overlayfs:
# their libraries are not in Debian) and go-systemd under its /v22 import path.
rm -rf "$O"; mkdir -p "$O/src/github.com/moby" "$O/src/github.com/coreos/go-systemd"
cp -a "$R/usr/share/gocode/src/github.com/moby/buildkit" "$O/src/github.com/moby/"
ln -s "$R/usr/share/gocode/src/github.com/coreos/go-systemd" "$O/src/github.com/coreos/go-systemd/v22"
python3 - "$O/src/github.com/moby/buildkit/cmd/buildkitd" <<'PY'
import re, sys, os
d = sys.argv[1]
p = os.path.join(d, 'main.go'); s = open(p).read()
for pkg in ('azblob', 'gha'):
    s = s.replace(f'\t"github.com/moby/buildkit/cache/remotecache/{pkg}"\n', '')
s, n = re.subn(r'\n\t\t"(gha|azblob)":\s+\w+\.ResolveCache(Exporter|Importer)Func\(\),', '', s)
assert n == 4, n
open(p, 'w').write(s)
p = os.path.join(d, 'main_oci_worker.go'); s = open(p).read()
for a, b in (('\tfuseoverlayfs "github.com/containerd/fuse-overlayfs-snapshotter"\n', ''),
             ('fuseoverlayfs.Supported(commonRoot)', 'errors.New("fuse-overlayfs not built in")'),
             ('fuseoverlayfs.NewSnapshotter(root)', 'nil, errors.New("fuse-overlayfs not built in")')):
    assert a in s, a
    s = s.replace(a, b)
open(p, 'w').write(s)
PY
version=$(dpkg-deb -f debs/golang-github-docker-docker-dev_*.deb Version)
log "building buildkitd and buildctl (BuildKit from docker.io $version)"
mkdir -p rootfs/usr/bin rootfs/lib/x86_64-linux-gnu rootfs/lib64 rootfs/etc/buildkit rootfs/etc/ssl/certs rootfs/tmp rootfs/var/lib/buildkit rootfs/run/buildkit
for cmd in buildkitd buildctl; do
  nice -n 19 go build -trimpath -o "rootfs/usr/bin/$cmd" \
    -ldflags "-s -w -X github.com/moby/buildkit/version.Version=debian-docker.io-$version" \
    "github.com/moby/buildkit/cmd/$cmd"
done
log "assembling the image"
mkdir -p extra && dpkg-deb -x debs/runc_*.deb extra && dpkg-deb -x debs/libseccomp2_*.deb extra
cp extra/usr/sbin/runc rootfs/usr/bin/
cp -L extra/usr/lib/x86_64-linux-gnu/libseccomp.so.2 /lib/x86_64-linux-gnu/libc.so.6 rootfs/lib/x86_64-linux-gnu/
cp -L /lib64/ld-linux-x86-64.so.2 rootfs/lib64/
cp /etc/ssl/certs/ca-certificates.crt rootfs/etc/ssl/certs/   # the intercepting CA, for https registries
chmod 1777 rootfs/tmp
cat >Dockerfile <<'DF'
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/bin
VOLUME /var/lib/buildkit
ENTRYPOINT ["buildkitd"]
DF
printf 'debs\nroot\noverlay\ngocache\napt-*\nextra\n' >.dockerignore
docker build -q -t "$image" . >/dev/null
cd / && rm -rf "$work"
log "built $image"
