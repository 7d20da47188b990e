#!/usr/bin/env bash
# Checks artifacts a job of .github/workflows/release.yml downloaded before it runs or
# publishes them: DIR must hold exactly the named files, each with the sha256 that the
# job which made it gave as a job output. Anything holding the run's runtime token can
# delete an artifact and upload another under its name; nothing but the job itself can
# set its outputs (docker/github-builder hands digests over the same way).
#
#   ci/check-artifacts.sh DIR 'SHA256  NAME'...    (sha256sum's format, one per file)
set -euo pipefail
dir=${1:?usage: ci/check-artifacts.sh DIR 'SHA256  NAME'...}
shift
if [ "$#" -eq 0 ]; then
  echo "error: no sha256 to check $dir against" >&2
  exit 1
fi
for line in "$@"; do
  # An empty or odd line is a job output that was never set.
  if ! printf '%s\n' "$line" | grep -Eq '^[0-9a-f]{64}  [^/]+$'; then
    echo "error: '$line' is not 'SHA256  NAME': the job that made an artifact of $dir did not output" \
      "its sha256; re-run all jobs, so that it does" >&2
    exit 1
  fi
done
expected=$(printf '%s\n' "$@" | cut -c67- | LC_ALL=C sort)
found=$(cd "$dir" && find . -mindepth 1 -maxdepth 1 | cut -c3- | LC_ALL=C sort)
if [ "$expected" != "$found" ]; then
  echo "error: $dir holds other files than the jobs that made its artifacts said" \
    "(an artifact was added or replaced after its job: re-run all jobs)" >&2
  echo "  expected: $(echo $expected)" >&2
  echo "  found:    $(echo $found)" >&2
  exit 1
fi
if report=$(cd "$dir" && printf '%s\n' "$@" | sha256sum --check --strict 2>&1); then
  exit 0
fi
echo "error: an artifact in $dir is not what its job made (it was replaced after its job" \
  "uploaded it: re-run all jobs, and find out who holds the run's token):" >&2
printf '%s\n' "$report" | grep -v ': OK$' | sed 's/^/  /' >&2
exit 1
