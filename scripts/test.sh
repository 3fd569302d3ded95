#!/usr/bin/env bash
# The whole test suite: unit, snapshot, CLI, property, emulator (moto) integration and
# data-plane tests (atmoz's image with OpenSSH, a real sftp client).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/venv.sh
# The atmoz image's filesystem (cached under ~/.cache; about a minute the first time). Where it
# cannot be built (not root, no ../shared/atmoz) the data-plane tests say so and skip, except in CI.
if [ "$(id -u)" = 0 ]; then
  scripts/atmoz-image.sh >/dev/null || [ -z "${CI:-}" ]
fi
# The IAM policy evaluator tests/iam.rs uses (npm, cached under ~/.cache; test-time only, never
# shipped). Without Node.js the evaluation says so and skips, except in CI.
scripts/iam-simulate.sh >/dev/null || [ -z "${CI:-}" ]
export INSTA_UPDATE=no
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
