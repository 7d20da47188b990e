#!/usr/bin/env bash
# The release tool for one job of .github/workflows/release.yml. The `release-tool` jobs
# build it for Linux x64 and arm64, holding no token that writes, and output its sha256;
# a later job on Linux downloads that binary into $RUNNER_TEMP/xtask first, and this
# checks it against XTASK_SHA256_<RUNNER_ARCH> (the job output, which nothing but that
# job can set, where the artifact can be replaced by anything holding the run's token).
# The release-tool jobs themselves build it from the lock file. Either way the job's
# later steps run it as "$XTASK" on this checkout (GITHUB_ENV). cargo-dist hands
# its tool to later jobs the same way.
set -euo pipefail
tool="$RUNNER_TEMP/xtask/xtask"
if [ -f "$tool" ]; then
  expected_name="XTASK_SHA256_${RUNNER_ARCH:?RUNNER_ARCH is set on every runner}"
  bash "$(dirname "$0")/check-artifacts.sh" "$(dirname "$tool")" "${!expected_name:-}  xtask"
else
  # Without the test-env feature: no test code in the release tool.
  cargo build --locked --package xtask
  mkdir -p "$(dirname "$tool")"
  cp "${CARGO_TARGET_DIR:-target}/debug/xtask" "$tool"
fi
# An artifact does not keep the executable bit.
chmod +x "$tool"
{
  echo "XTASK=$tool"
  echo "XTASK_PROJECT_ROOT=$GITHUB_WORKSPACE"
} >>"$GITHUB_ENV"
