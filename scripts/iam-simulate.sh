#!/usr/bin/env bash
# Installs the IAM policy evaluator tests/iam.rs runs manifests/iam-policy*.json through:
# @cloud-copilot/iam-simulate at the exact versions of tests/iam/package-lock.json, with `npm ci`
# from the npm registry. Test-time only (AGPL): installed outside the clone, never shipped.
#
# Prints the install directory (give it to `node tests/iam/simulate.mjs DIR`). Cached under
# ~/.cache/sftp-operator/iam-simulate/<hash>, where the hash covers package.json, the lockfile
# and this script: a change to any of them installs afresh. Idempotent; one install at a time.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
src="$repo/tests/iam"
for tool in node npm; do
  command -v "$tool" >/dev/null || {
    echo "iam-simulate: \`$tool\` is missing (Node.js 20 or later with npm; scripts/deps.sh installs it as root)" >&2
    exit 2
  }
done

cache="${XDG_CACHE_HOME:-$HOME/.cache}/sftp-operator/iam-simulate"
hash="$(cat "$src/package.json" "$src/package-lock.json" "$repo/scripts/iam-simulate.sh" | sha256sum | cut -c1-16)"
dir="$cache/$hash"
if [ -f "$dir/complete" ]; then
  echo "$dir"
  exit 0
fi
# Test processes may ask at once; the second one waits and finds it complete.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$dir/complete" ]; then
  echo "$dir"
  exit 0
fi

rm -rf "${cache:?}/$hash"
mkdir -p "$dir"
cp "$src/package.json" "$src/package-lock.json" "$dir/"
echo "iam-simulate: npm ci into $dir" >&2
# --ignore-scripts: nothing from the registry runs at install time.
(cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >"$dir/npm-ci.log" 2>&1 || {
  tail -n 30 "$dir/npm-ci.log" >&2
  exit 1
}
[ -f "$dir/node_modules/@cloud-copilot/iam-simulate/package.json" ] || {
  echo "iam-simulate: npm ci did not install @cloud-copilot/iam-simulate" >&2
  exit 1
}
touch "$dir/complete"
# Older installs are never used again.
find "$cache" -mindepth 1 -maxdepth 1 -type d ! -name "$hash" -exec rm -rf {} +
echo "$dir"
