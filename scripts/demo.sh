#!/usr/bin/env bash
# The main job on a local default: start the AWS emulator on a free 127.0.0.1 port, seed a
# sandbox world, then plan, converge, converge again (no changes) and show status for the
# example manifests adapted to the sandbox's ids. Stops the emulator and cleans up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
cargo build --quiet --bin sftp-operator
bin=${CARGO_TARGET_DIR:-target}/debug/sftp-operator

work=$(mktemp -d)
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; wait $moto 2>/dev/null; rm -rf "$work"' EXIT

export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_ENDPOINT_URL="http://127.0.0.1:$port"
for _ in $(seq 100); do grep -q "Running on" "$work/moto.log" && break; sleep 0.1; done

echo "== emulator on $AWS_ENDPOINT_URL; seeding the sandbox world"
.venv/bin/python scripts/sandbox.py "$AWS_ENDPOINT_URL" >"$work/world.json"
lb=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["loadBalancerArn"])' "$work/world.json")
sg=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["securityGroup"])' "$work/world.json")
zone=$(.venv/bin/python -c 'import json,sys; print(json.load(open(sys.argv[1]))["publicZone"])' "$work/world.json")
mkdir "$work/manifests"
for f in manifests/examples/*.yaml; do
  sed -e "s#arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/sftp/0123456789abcdef#$lb#" \
      -e "s#sg-0123456789abcdef0#$sg#" -e "s#zone: example.edu.#zone: $zone#" "$f" >"$work/manifests/$(basename "$f")"
done
echo "   NLB $lb, instance security group $sg, public zone $zone (the sandbox also has a private example.edu.)"

echo; echo "== sftp-operator plan -f manifests/examples/"
"$bin" plan -f "$work/manifests" || [ $? -eq 2 ]
echo; echo "== sftp-operator converge -f manifests/examples/"
"$bin" converge -f "$work/manifests"
echo; echo "== sftp-operator converge (again: nothing to do)"
"$bin" converge -f "$work/manifests"
echo; echo "== sftp-operator status -f manifests/examples/campus.yaml"
"$bin" status -f "$work/manifests/campus.yaml"
echo; echo "== done; emulator stopped"
