#!/usr/bin/env python3
"""Benchmarks against the AWS emulator (moto), printing figures; not a test.

  scripts/bench.sh            # builds the binary, creates the venv, runs this

Figures: converge from empty and no-op (wall, calls, mutating); Route 53 calls per pass for 1
and 50 services in one zone; event → A record latency over 100 ECS events (p50, p99); reconcile
latency after a manifest edit (p50, p99); idle CPU and RSS of `run` with 1 and 50 services.
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SFTP_OPERATOR_BIN", os.path.join(ROOT, "target/debug/sftp-operator"))
os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
                  AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true", NO_COLOR="1")
ENV = dict(os.environ)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Moto:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([os.path.join(ROOT, ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            if "Running on" in line:
                break
        import threading
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
        # ECS tasks would otherwise decay one state per describe call (shared/MOTO.md).
        import urllib.request
        urllib.request.urlopen(urllib.request.Request(
            f"{self.url}/moto-api/state-manager/set-transition", method="POST",
            data=json.dumps({"model_name": "ecs::task", "transition": {"progression": "manual", "times": 1000000}}).encode()))
        out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/sandbox.py"), self.url], env=ENV,
                             capture_output=True, text=True, check=True)
        self.world = json.loads(out.stdout)
        self.env = dict(ENV, AWS_ENDPOINT_URL=self.url)

    def client(self, name):
        return boto3.client(name, endpoint_url=self.url, region_name="us-east-1")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def adapt(text, world, zone=True):
    text = text.replace("arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/sftp/0123456789abcdef",
                        world["loadBalancerArn"]).replace("sg-0123456789abcdef0", world["securityGroup"])
    return text.replace("zone: example.edu.", f"zone: {world['publicZone']}") if zone else text


def operator(moto, *args):
    t = time.monotonic()
    p = subprocess.run([BIN, *args], env=moto.env, capture_output=True, text=True)
    took = time.monotonic() - t
    if p.returncode not in (0, 2):
        raise SystemExit(f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    m = re.search(r"(\d+) AWS calls \((\d+) mutating\)", p.stdout)
    return took, (int(m.group(1)), int(m.group(2))) if m else None, p.stdout


def calls_by_service(path):
    out = {}
    for c in json.load(open(path)):
        out[c["service"]] = out.get(c["service"], 0) + c["count"]
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def many_services(moto, n, tmp, key_secret):
    """n services in one zone: own security group each (the 60-rule quota), shared secret."""
    ec2 = moto.client("ec2")
    alice = open(os.path.join(ROOT, "tests/fixtures/keys/alice.pub")).read().strip()
    docs = []
    for i in range(n):
        sg = ec2.create_security_group(GroupName=f"b{i}", Description="bench", VpcId=moto.world["vpc"])["GroupId"]
        docs.append(f"""apiVersion: sftp-operator/v1alpha1
kind: SftpService
metadata: {{name: bench-{i}}}
spec:
  cluster: sftp
  port: {20000 + i}
  users: [{{name: u, uid: 1000, directories: [upload], keys: ["{alice}"]}}]
  storage: {{hostPath: /mnt/sftp}}
  hostKeys: {{generate: false, secretArn: "{key_secret}"}}
  executionRoleArn: arn:aws:iam::123456789012:role/x
  loadBalancer: {{arn: "{moto.world['loadBalancerArn']}", listenerPort: {2000 + i}}}
  access: {{securityGroupId: {sg}, allowedCidrs: [192.0.2.0/24]}}
  dns: {{zone: {moto.world['publicZone']}, record: bench-{i}.example.edu.}}
""")
    d = os.path.join(tmp, f"many-{n}")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "services.yaml"), "w").write("---\n".join(docs))
    return d


def proc_stats(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS"))
    return ticks / os.sysconf("SC_CLK_TCK"), rss


def metrics(addr):
    import urllib.request
    try:
        return urllib.request.urlopen(f"http://{addr}/metrics", timeout=2).read().decode()
    except OSError:
        return ""


def wait_for(cond, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.005)


def step(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def main():
    results = {}
    tmp = tempfile.mkdtemp()

    step('# 1. converge')
    # 1. converge of the campus example from empty, then no-op.
    moto = Moto()
    campus = os.path.join(tmp, "campus.yaml")
    open(campus, "w").write(adapt(open(os.path.join(ROOT, "manifests/examples/campus.yaml")).read(), moto.world))
    took, (calls, mut), _ = operator(moto, "converge", "-f", campus)
    results["converge from empty (campus, incl. RSA-4096 + Ed25519 generation)"] = f"{took:.2f} s, {calls} calls, {mut} mutating"
    noop = []
    for _ in range(5):
        took, (calls, mut), _ = operator(moto, "converge", "-f", campus)
        noop.append(took)
    results["no-op converge (campus)"] = f"{statistics.median(noop):.3f} s median of 5, {calls} calls, {mut} mutating"
    moto.stop()

    step('# 1b.')
    # 1b. the same from empty with an existing host-key secret (no key generation).
    moto = Moto()
    sm = moto.client("secretsmanager")
    arn = sm.create_secret(Name="bench-keys", SecretString="{}")["ARN"]
    text = adapt(open(os.path.join(ROOT, "manifests/examples/campus.yaml")).read(), moto.world)
    text = text.replace("  hostKeys:\n    generate: true\n", f"  hostKeys:\n    generate: false\n    secretArn: {arn}\n").replace("    sshfp: true\n", "")
    open(campus, "w").write(text)
    took, (calls, mut), _ = operator(moto, "converge", "-f", campus)
    results["converge from empty (campus, host keys from an existing secret)"] = f"{took:.2f} s, {calls} calls, {mut} mutating"
    moto.stop()

    step('# 2. Route 53')
    # 2. Route 53 calls per pass, 1 and 50 services in one zone.
    for n in (1, 50):
        moto = Moto()
        arn = moto.client("secretsmanager").create_secret(Name="bench-keys", SecretString="{}")["ARN"]
        d = many_services(moto, n, tmp, arn)
        took, (calls, mut), _ = operator(moto, "converge", "-f", d)
        results[f"converge from empty, {n} service(s)"] = f"{took:.2f} s, {calls} calls, {mut} mutating"
        out = os.path.join(tmp, "calls.json")
        took, (calls, mut), _ = operator(moto, "converge", "--calls-out", out, "-f", d)
        r53 = calls_by_service(out).get("Route 53", 0)
        results[f"no-op pass, {n} service(s)"] = f"{took:.2f} s, {calls} calls ({r53} Route 53), {mut} mutating"
        if n == 50:
            run_idle(moto, d, n, results)
        moto.stop()

    step('# 3. event')
    # 3. event → A record latency over 100 events, and edit → reconcile latency.
    moto = Moto()
    event_latency(moto, tmp, results)
    moto.stop()

    step('# 4. idle')
    # 4. idle CPU/RSS with one service.
    moto = Moto()
    arn = moto.client("secretsmanager").create_secret(Name="bench-keys", SecretString="{}")["ARN"]
    run_idle(moto, many_services(moto, 1, tmp, arn), 1, results)
    moto.stop()

    report(results)


def report(results):
    width = max(len(k) for k in results)
    print("\nsftp-operator benchmarks (moto on 127.0.0.1, debug build, this machine):")
    for k, v in results.items():
        print(f"  {k:<{width}}  {v}")


def run_idle(moto, d, n, results):
    addr = f"127.0.0.1:{free_port()}"
    p = subprocess.Popen([BIN, "run", "-f", d, "--resync", "5s", "--metrics-addr", addr], env=moto.env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: "sftp_operator_reconcile_total" in metrics(addr), 120, "first reconcile")
    time.sleep(10)  # let the first full sync settle before measuring idle
    cpu0, _ = proc_stats(p.pid)
    t0 = time.monotonic()
    time.sleep(30)  # six resync periods
    cpu1, rss = proc_stats(p.pid)
    results[f"run idle, {n} service(s), resync 5 s"] = f"{100 * (cpu1 - cpu0) / (time.monotonic() - t0):.1f}% of a core, RSS {rss / 1024:.1f} MiB"
    p.terminate()
    p.wait()


def event_latency(moto, tmp, results):
    w = moto.world
    sqs, events, ecs, r53 = (moto.client(n) for n in ("sqs", "events", "ecs", "route53"))
    url = sqs.create_queue(QueueName="bench-events")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="bench", EventPattern=json.dumps({"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]}))
    events.put_targets(Rule="bench", Targets=[{"Id": "q", "Arn": qarn}])
    d = os.path.join(tmp, "event")
    os.makedirs(d, exist_ok=True)
    f = os.path.join(d, "efs.yaml")
    open(f, "w").write(adapt(open(os.path.join(ROOT, "manifests/examples/efs.yaml")).read(), w))
    addr = f"127.0.0.1:{free_port()}"
    p = subprocess.Popen([BIN, "run", "-f", d, "--resync", "1h", "--events-queue-url", url, "--metrics-addr", addr,
                          "--manifest-poll", "1h"], env=moto.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: 'result="success"' in metrics(addr), 120, "first successful reconcile")

    def a_record():
        rs = r53.list_resource_record_sets(HostedZoneId=w["publicZone"])["ResourceRecordSets"]
        return [v["Value"] for r in rs if r["Name"] == "efs-drop.example.edu." and r["Type"] == "A" for v in r["ResourceRecords"]]

    lat, task = [], None
    for i in range(100):
        inst = w["instances"][i % 2]
        if task:
            ecs.stop_task(cluster="sftp", task=task)
        task = ecs.start_task(cluster="sftp", taskDefinition="sftp-efs-drop", containerInstances=[inst["containerInstanceArn"]],
                              group="service:efs-drop")["tasks"][0]["taskArn"]
        t = time.monotonic()
        events.put_events(Entries=[{"Source": "aws.ecs", "DetailType": "ECS Task State Change", "Detail": json.dumps(
            {"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/sftp", "group": "service:efs-drop", "lastStatus": "RUNNING"})}])
        wait_for(lambda: a_record() == [inst["privateIp"]], 60, f"A record after event {i}")
        lat.append(time.monotonic() - t)
    results["event → A record (100 ECS events, failover between 2 hosts)"] = \
        f"p50 {1000 * pct(lat, 50):.0f} ms, p99 {1000 * pct(lat, 99):.0f} ms"

    # Manifest edit → applied, with inotify (poll fallback set to 1 h above).
    text = open(f).read()
    lat = []
    for i in range(20):
        count = 2 + i % 2
        t = time.monotonic()
        tmpf = f + ".tmp"
        open(tmpf, "w").write(text.replace("  port: 30010\n", f"  port: 30010\n  desiredCount: {count}\n"))
        os.rename(tmpf, f)
        wait_for(lambda: ecs.describe_services(cluster="sftp", services=["efs-drop"])["services"][0]["desiredCount"] == count,
                 60, f"desiredCount {count} after edit {i}")
        lat.append(time.monotonic() - t)
    results["manifest edit → applied (20 edits)"] = f"p50 {1000 * pct(lat, 50):.0f} ms, p99 {1000 * pct(lat, 99):.0f} ms"
    p.terminate()
    p.wait()


if __name__ == "__main__":
    main()
