#!/usr/bin/env bash
# The release tool for one job of .github/workflows/release.yml. The plan job builds it
# once; a later job on the same platform (Linux x64) downloads that binary into
# $RUNNER_TEMP/xtask first, and a job on another platform (arm64, macOS) builds its own
# from the lock file. Either way the job's later steps run it as "$XTASK" on this
# checkout (GITHUB_ENV). cargo-dist hands its tool to later jobs the same way.
set -euo pipefail
tool="$RUNNER_TEMP/xtask/xtask"
if [ ! -f "$tool" ]; then
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
