#!/usr/bin/env bash
# Creates .venv with the AWS emulator (moto in server mode), boto3 and the AWS CLI.
# Idempotent: a venv that already has them is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/moto_server ] && [ -x .venv/bin/aws ]; then
  exit 0
fi
python3 -m venv .venv
.venv/bin/pip install --quiet 'moto[server]>=5.1,<6' awscli
