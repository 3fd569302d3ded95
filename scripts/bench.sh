#!/usr/bin/env bash
# Benchmarks; print tables of figures, not tests.
#   scripts/bench.sh          against the local AWS emulator (scripts/bench.py), debug build
#   scripts/bench.sh parse    hostile and large manifest sets through `validate`
#                             (scripts/bench_parse.py), release build: what ships
#   scripts/bench.sh scale    N services on one security group: converge from empty, no-op and
#                             one key changed, per N on a fresh emulator (scripts/bench.py scale),
#                             debug build; BENCH_SCALE_NS=1,20 (default 1,20,100,500) and
#                             BENCH_SCALE_GENERATE_NS (default 1,20: host keys generated) pick N
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
if [ "${1:-}" = parse ]; then
  cargo build --quiet --release --bin sftp-operator
  SFTP_OPERATOR_BIN="$target/release/sftp-operator" exec python3 scripts/bench_parse.py
fi
scripts/venv.sh
cargo build --quiet --bin sftp-operator
if [ "${1:-}" = scale ]; then
  SFTP_OPERATOR_BIN="$target/debug/sftp-operator" exec .venv/bin/python scripts/bench.py scale
fi
SFTP_OPERATOR_BIN="$target/debug/sftp-operator" exec .venv/bin/python scripts/bench.py
