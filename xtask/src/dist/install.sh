#!/bin/sh
# Installs stigmer @VERSION@: picks this machine's archive from the release, checks its
# sha256 against checksums.txt (and, with cosign on PATH, checksums.txt's signature),
# and puts the binary in ~/.local/bin (or STIGMER_INSTALL_DIR) in one rename. Any
# mismatch or an unsupported platform stops it with nothing installed.
#
#   curl -fsSL https://github.com/stigmer/stigmer/releases/download/v@VERSION@/install.sh | sh
#
# STIGMER_INSTALL_URL       where the release's assets are (default: its GitHub release)
# STIGMER_INSTALL_DIR       where `stigmer` goes (default: ~/.local/bin)
# STIGMER_INSTALL_COSIGN_KEY  check the signature with this public key, not keyless
#
# Written by `cargo xtask checksums` for this release; POSIX sh (dash, busybox, bash).
set -eu

version="@VERSION@"
repo="https://github.com/stigmer/stigmer"
base="${STIGMER_INSTALL_URL:-$repo/releases/download/v$version}"
base="${base%/}"
dir="${STIGMER_INSTALL_DIR:-${HOME:?HOME is not set: set STIGMER_INSTALL_DIR}/.local/bin}"

say() { printf 'stigmer install: %s\n' "$*" >&2; }
fail() {
  say "$*"
  say "nothing was installed"
  exit 1
}

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) fail "no stigmer build for $(uname -s): download the archive for your platform from $repo/releases (Windows: use WSL, or the zip when there is one)" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) fail "no stigmer build for $os on $(uname -m): stigmer is built for amd64 (x86_64) and arm64 (aarch64); build it from source ($repo)" ;;
esac
archive="stigmer-v$version-$os-$arch.tar.gz"

if command -v curl >/dev/null 2>&1; then
  fetch() { curl --fail --silent --show-error --location --retry 2 --output "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q -O "$2" "$1"; }
else
  fail "neither curl nor wget is on PATH: install one of them"
fi
if command -v sha256sum >/dev/null 2>&1; then
  sha256() { sha256sum "$1" | cut -d ' ' -f 1; }
elif command -v shasum >/dev/null 2>&1; then
  sha256() { shasum -a 256 "$1" | cut -d ' ' -f 1; }
else
  fail "neither sha256sum nor shasum is on PATH: install coreutils"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM

say "downloading $archive from $base"
fetch "$base/$archive" "$tmp/$archive" || fail "could not download $base/$archive: check STIGMER_INSTALL_URL and your connection"
fetch "$base/checksums.txt" "$tmp/checksums.txt" || fail "could not download $base/checksums.txt"

if command -v cosign >/dev/null 2>&1; then
  fetch "$base/checksums.txt.sigstore.json" "$tmp/checksums.txt.sigstore.json" ||
    fail "could not download $base/checksums.txt.sigstore.json, the signature of checksums.txt"
  # The signature is a standard Sigstore bundle, which cosign 2 reads only when told.
  cosign verify-blob --help 2>/dev/null | grep -q -- --new-bundle-format ||
    fail "the cosign on PATH ($(command -v cosign)) is older than 2.4 and cannot read a Sigstore bundle: upgrade cosign, or take it off PATH to check the sha256 only"
  if [ -n "${STIGMER_INSTALL_COSIGN_KEY:-}" ]; then
    # A key signature has no certificate or log entry: a trusted root that trusts none
    # leaves the key alone to verify it, and cosign fetches no root from Sigstore.
    printf '%s\n' '{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}' >"$tmp/trusted_root.json"
    set -- --key "$STIGMER_INSTALL_COSIGN_KEY" --insecure-ignore-tlog --trusted-root "$tmp/trusted_root.json"
  else
    set -- --certificate-identity "$repo/.github/workflows/release.yml@refs/tags/v$version" \
      --certificate-oidc-issuer https://token.actions.githubusercontent.com
  fi
  cosign verify-blob --new-bundle-format --bundle "$tmp/checksums.txt.sigstore.json" "$@" "$tmp/checksums.txt" >/dev/null 2>&1 ||
    fail "the signature of checksums.txt does not verify (cosign verify-blob): the release may have been tampered with; report it at $repo/issues"
  say "checksums.txt is signed by the release workflow (cosign)"
else
  say "cosign is not on PATH: checking the sha256 only (install cosign to check the signature too)"
fi

expected="$(awk -v name="$archive" '$2 == name { print $1 }' "$tmp/checksums.txt")"
[ -n "$expected" ] || fail "checksums.txt does not list $archive"
actual="$(sha256 "$tmp/$archive")"
[ "$actual" = "$expected" ] ||
  fail "$archive has sha256 $actual, but checksums.txt says $expected: the download is damaged or was changed; try again, and report it at $repo/issues if it persists"

mkdir -p "$tmp/unpacked"
tar -xzf "$tmp/$archive" -C "$tmp/unpacked" || fail "could not unpack $archive"
binary="$tmp/unpacked/stigmer-v$version-$os-$arch/stigmer"
[ -f "$binary" ] || fail "$archive holds no stigmer-v$version-$os-$arch/stigmer"

mkdir -p "$dir" || fail "could not create $dir: set STIGMER_INSTALL_DIR to a directory you can write"
# Copied beside its destination, then renamed over it: a running stigmer, or one
# interrupted half way, never sees a partial file.
staged="$dir/.stigmer.install.$$"
if ! { cp "$binary" "$staged" && chmod 0755 "$staged"; }; then
  rm -f "$staged"
  fail "could not write to $dir: set STIGMER_INSTALL_DIR to a directory you can write"
fi
mv -f "$staged" "$dir/stigmer"
say "installed stigmer $version to $dir/stigmer"
case ":$PATH:" in
  *":$dir:"*) ;;
  *) say "$dir is not on your PATH: add it (export PATH=\"$dir:\$PATH\")" ;;
esac
