#!/usr/bin/env bash
# Benchmarks against the local AWS emulator; prints a table of figures (see scripts/bench.py).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
cargo build --quiet --bin sftp-operator
SFTP_OPERATOR_BIN="${CARGO_TARGET_DIR:-target}/debug/sftp-operator" exec .venv/bin/python scripts/bench.py
