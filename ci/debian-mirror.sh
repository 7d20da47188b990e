#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt already uses, never a hard-coded host:
# the first `URIs:` of deb822 sources (Debian 12 images) or the first http(s) address of
# a `deb` line in sources.list (Debian 12's installer and debootstrap write that one).
# test-support's base_image.rs reads the same two files.
set -euo pipefail
mirror=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
[[ -n "$mirror" ]] ||
  mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' /etc/apt/sources.list 2>/dev/null || true)
[[ -n "$mirror" ]] || { echo "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2; exit 1; }
echo "$mirror"
