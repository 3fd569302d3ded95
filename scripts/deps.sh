#!/usr/bin/env bash
# Debian packages the test suite runs for real: Prometheus (promtool + server for the metrics
# tests), OpenSSH's client, sshpass and busybox (the data-plane tests log in as users do),
# debootstrap and iproute2 (the atmoz image and its tasks' namespaces), kubectl (the chart test),
# Node.js and npm (the IAM policy evaluator tests/iam.rs installs with scripts/iam-simulate.sh).
# Installs only what is missing, and only as root; elsewhere it says what is missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
{ have promtool && have prometheus; } || need+=(prometheus)
{ have ssh-keygen && have sftp; } || need+=(openssh-client)
have sshpass || need+=(sshpass)
have busybox || need+=(busybox)
have debootstrap || need+=(debootstrap)
have ip || need+=(iproute2)
{ have unshare && have setpriv; } || need+=(util-linux)
have kubectl || need+=(kubernetes-client) # `kubectl kustomize` for the chart test
{ have node && have npm; } || need+=(nodejs npm) # the IAM policy evaluator (scripts/iam-simulate.sh)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing ${need[*]}; install them as root (apt-get install ${need[*]}) or those tests skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
