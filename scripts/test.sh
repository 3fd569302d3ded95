#!/usr/bin/env bash
# The whole test suite: unit, snapshot, CLI, property and emulator (moto) integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
export INSTA_UPDATE=no
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
