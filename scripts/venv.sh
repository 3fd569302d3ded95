#!/usr/bin/env bash
# Creates .venv with the AWS emulator (moto in server mode), boto3, the AWS CLI and
# check-jsonschema (for the Helm chart's values) and ssh-audit (the SFTP server's crypto policy).
# Idempotent: a venv that already has them is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/moto_server ] && [ -x .venv/bin/aws ] && [ -x .venv/bin/check-jsonschema ] && [ -x .venv/bin/ssh-audit ]; then
  exit 0
fi
[ -x .venv/bin/pip ] || python3 -m venv .venv
.venv/bin/pip install --quiet 'moto[server]>=5.1,<6' awscli check-jsonschema 'ssh-audit==3.9.0'
