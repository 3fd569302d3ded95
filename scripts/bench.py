#!/usr/bin/env python3
"""Benchmarks against the AWS emulator (moto), printing figures; not a test.

  scripts/bench.sh            # builds the binary, creates the venv, runs this
  scripts/bench.sh scale      # the scale table only (scale() below); BENCH_SCALE_NS=1,20 to pick N

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
    def __init__(self, paged=False):
        """paged: page the lists moto returns whole as AWS does (moto_paged below)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        server = [sys.executable, os.path.abspath(__file__), "moto-paged"] if paged else [os.path.join(ROOT, ".venv/bin/moto_server")]
        self.proc = subprocess.Popen([*server, "-H", "127.0.0.1", "-p", str(self.port)],
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


# (moto class, method, list key, marker in, marker out, page-size parameter, AWS's default page, maximum)
AWS_PAGES = [
    ("moto.ecs.responses:EC2ContainerServiceResponse", "list_services", "serviceArns", "nextToken", "nextToken", "maxResults", 10, 100),
    ("moto.elbv2.responses:ELBV2Response", "describe_target_groups", "TargetGroups", "Marker", "NextMarker", "PageSize", 400, 400),
    ("moto.elbv2.responses:ELBV2Response", "describe_listeners", "Listeners", "Marker", "NextMarker", "PageSize", 400, 400),
]


def moto_paged(argv):
    """moto_server, but the lists in AWS_PAGES come in AWS's pages (moto 5 returns them whole), so
    that the operator's paginators walk more than one page with hundreds of services."""
    import importlib
    from moto.core.responses import ActionResult
    from moto.server import main as moto_main

    def paged(orig, key, marker_in, marker_out, size_param, default, maximum):
        def method(self):
            whole = orig(self)
            items = list(whole.result[key])
            start = int(self._get_param(marker_in) or 0)
            size = min(int(self._get_param(size_param) or default), maximum)
            out = dict(whole.result, **{key: items[start:start + size]})
            out.pop(marker_out, None)
            if start + size < len(items):
                out[marker_out] = str(start + size)
            return ActionResult(out)
        return method

    for where, name, *rest in AWS_PAGES:
        module, cls = where.split(":")
        cls = getattr(importlib.import_module(module), cls)
        setattr(cls, name, paged(getattr(cls, name), *rest))
    moto_main(argv)


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


def many_services(moto, n, tmp, key_secret, sg=None, cidrs=("192.0.2.0/24",), key="alice", name="many"):
    """n services in one zone, in services.yaml of a new directory.

    sg None: a new security group per service (the 60-rule quota); else every service on `sg`.
    key_secret: the shared host-key secret (hostKeys.generate false); None generates per service.
    """
    ec2 = moto.client("ec2")
    user_key = open(os.path.join(ROOT, f"tests/fixtures/keys/{key}.pub")).read().strip()
    host_keys = f'{{generate: false, secretArn: "{key_secret}"}}' if key_secret else "{generate: true}"
    docs = []
    for i in range(n):
        group = sg or ec2.create_security_group(GroupName=f"b{i}", Description="bench", VpcId=moto.world["vpc"])["GroupId"]
        docs.append(f"""apiVersion: sftp-operator/v1alpha1
kind: SftpService
metadata: {{name: bench-{i}}}
spec:
  cluster: sftp
  port: {20000 + i}
  users: [{{name: u, uid: 1000, directories: [upload], keys: ["{user_key}"]}}]
  storage: {{hostPath: /mnt/sftp}}
  hostKeys: {host_keys}
  executionRoleArn: arn:aws:iam::123456789012:role/x
  loadBalancer: {{arn: "{moto.world['loadBalancerArn']}", listenerPort: {2000 + i}}}
  access: {{securityGroupId: {group}, allowedCidrs: [{", ".join(cidrs)}]}}
  dns: {{zone: {moto.world['publicZone']}, record: bench-{i}.example.edu.}}
""")
    d = os.path.join(tmp, f"{name}-{n}")
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
    results["converge from empty (campus, incl. RSA-3072 + Ed25519 generation)"] = f"{took:.2f} s, {calls} calls, {mut} mutating"
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

# --- scale: N services on one security group (scripts/bench.sh scale) ---------------------------

SCALE_CIDRS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
SCALE_TIMEOUT = float(os.environ.get("BENCH_SCALE_TIMEOUT", "1800"))  # per converge, seconds
SCALE_PAGED = os.environ.get("BENCH_SCALE_AWS_PAGES", "1") != "0"  # 0: moto's own (whole) lists


def ns_from_env(name, default):
    return [int(x) for x in os.environ.get(name, default).replace(" ", "").split(",") if x]


def sample_hwm(pid, done, hwm):
    """The child's VmHWM (KiB) from /proc, every 10 ms until `done`."""
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm[0] = max(hwm[0], int(line.split()[1]))
        except OSError:
            return
        done.wait(0.01)


def converge_measured(moto, d, calls_out):
    """One `converge` as a child of ours: wall, exit code, calls, peak RSS (wait4), problems.

    Never raises on a failed converge: the caller prints whatever it exited with."""
    if os.path.exists(calls_out):
        os.unlink(calls_out)
    import resource
    import threading
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.monotonic()
        p = subprocess.Popen([BIN, "converge", "--calls-out", calls_out, "-f", d], env=moto.env,
                             stdout=out, stderr=err, text=True)
        timer = threading.Timer(SCALE_TIMEOUT, p.kill)
        timer.start()
        done, hwm = threading.Event(), [0]
        sampler = threading.Thread(target=sample_hwm, args=(p.pid, done, hwm), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(p.pid, 0)
        took = time.monotonic() - t
        done.set()
        timed_out = not timer.is_alive()
        timer.cancel()
        sampler.join()
        p.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    # wait4's ru_maxrss is max(the operator's peak, this Python's peak when it spawned the child:
    # exec records the old address space's high-water mark). Above that floor it is exact; below
    # it, the operator's own VmHWM as last sampled (every 10 ms) is the figure.
    rss = usage.ru_maxrss if usage.ru_maxrss > floor else max(hwm[0], 1)
    m = re.search(r"(\d+) AWS calls \((\d+) mutating\)", stdout)
    calls = json.load(open(calls_out)) if os.path.exists(calls_out) else None
    # Plan problems ("  ✗ message" under the service's name) and failed applies ("  ✗ ~ svc kind name: error").
    problems, svc = [], None
    for line in stdout.splitlines():
        if line and not line.startswith(" "):
            svc = None if line.startswith(("Plan:", "Applied", "Owned", "Events")) else line
        elif line.startswith("  ✗ "):
            problems.append(f"{svc}: {line[4:].strip()}" if svc else line[4:].strip())
    errors = [l for l in stderr.splitlines() if l.strip()]
    if timed_out:
        errors.insert(0, f"killed after {SCALE_TIMEOUT:g} s (BENCH_SCALE_TIMEOUT)")
    return {
        "wall": took, "exit": code, "rss": rss / 1024,
        "calls": int(m.group(1)) if m else None, "mutating": int(m.group(2)) if m else None,
        "by_op": calls, "problems": problems,
        "errors": errors,
    }


SHORT = {"Elastic Load Balancing v2": "ELB", "Secrets Manager": "SM", "ServiceDiscovery": "CloudMap", "Route 53": "R53"}


def top_calls(calls, k=3):
    """Calls per AWS service, then the k most frequent operations, then failed calls if any."""
    if calls is None:
        return "–"
    by_op, by_svc, failed = {}, {}, {}
    for c in calls:
        by_op[c["operation"]] = by_op.get(c["operation"], 0) + c["count"]
        svc = SHORT.get(c["service"], c["service"])
        by_svc[svc] = by_svc.get(svc, 0) + c["count"]
        if c.get("outcome", "ok") != "ok":
            key = f'{c["operation"]} {c["outcome"]}'
            failed[key] = failed.get(key, 0) + c["count"]
    if not by_op:
        return "none"
    desc = lambda d: sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))
    text = " ".join(f"{s} {n}" for s, n in desc(by_svc)) + "; " + ", ".join(f"{op}×{n}" for op, n in desc(by_op)[:k])
    if failed:
        text += "; failed: " + ", ".join(f"{k}×{n}" for k, n in desc(failed))
    return text


# Reads that come in pages (moto pages these itself or, in scale mode, through moto_paged).
PAGED_OPS = ("ListServices", "DescribeTargetGroups", "DescribeListeners", "ListResourceRecordSets",
             "DescribeLoadBalancers", "ListSecrets", "DescribeSecurityGroupRules")


def paged_calls(calls):
    """Calls to the paged reads, those made more than once named: the pages walked."""
    if calls is None:
        return "–"
    n = {}
    for c in calls:
        if c["operation"] in PAGED_OPS:
            n[c["operation"]] = n.get(c["operation"], 0) + c["count"]
    many = ", ".join(f"{op}×{k}" for op, k in sorted(n.items()) if k > 1)
    return many or ("1 each" if n else "none")


def result_cell(r):
    if r["exit"] == 0 and not r["problems"]:
        return "ok"
    first = r["problems"][0] if r["problems"] else (r["errors"][0] if r["errors"] else "")
    more = len(r["problems"]) - 1 if r["problems"] else 0
    first = first if len(first) <= 140 else first[:137] + "..."
    cell = f"exit {r['exit']}" + (f": {first}" if first else "") + (f" (+{more} more)" if more > 0 else "")
    return cell.replace("|", "\\|")


def scale_rows(n, generate, tmp):
    """One fresh moto; converge from empty, no-op, one user's key changed. Yields table rows."""
    label = "generated" if generate else "shared secret"
    step(f"scale N={n} ({label}): starting moto")
    moto = Moto(paged=SCALE_PAGED)
    try:
        arn = None if generate else moto.client("secretsmanager").create_secret(Name="bench-keys", SecretString="{}")["ARN"]
        d = many_services(moto, n, tmp, arn, sg=moto.world["securityGroup"], cidrs=SCALE_CIDRS,
                          name=f"scale-{'gen' if generate else 'shared'}")
        f = os.path.join(d, "services.yaml")
        calls_out = os.path.join(tmp, "scale-calls.json")
        for scenario in ("from empty", "no-op", "one-key change"):
            if scenario == "one-key change":  # bench-0 is the first document: its user gets bob's key
                alice = open(os.path.join(ROOT, "tests/fixtures/keys/alice.pub")).read().strip()
                bob = open(os.path.join(ROOT, "tests/fixtures/keys/bob.pub")).read().strip()
                text = open(f).read()
                open(f, "w").write(text.replace(alice, bob, 1))
            step(f"scale N={n} ({label}): converge {scenario}")
            r = converge_measured(moto, d, calls_out)
            step(f"scale N={n} ({label}): {scenario}: {r['wall']:.2f} s, exit {r['exit']}, "
                 f"{r['calls']} calls ({r['mutating']} mutating), peak RSS {r['rss']:.0f} MiB"
                 + (f", {len(r['problems'])} problem(s)" if r["problems"] else ""))
            calls = "–" if r["calls"] is None else str(r["calls"])
            writes = "–" if r["mutating"] is None else str(r["mutating"])
            yield (f"| {n} | {label} | {scenario} | {result_cell(r)} | {r['wall']:.2f} | {calls} | {writes} | "
                   f"{r['rss']:.0f} | {top_calls(r['by_op'])} | {paged_calls(r['by_op'])} |")
        if not generate and n in ns_from_env("BENCH_SCALE_RUN_NS", "500"):
            yield run_row(moto, d, n, label)
    finally:
        moto.stop()


WRITE = re.compile(r"^(Create|Update|Delete|Register|Deregister|Modify|Authorize|Revoke|Change|Tag|Put|Send)")


def api_calls(addr):
    """(all, writes) from `sftp_operator_aws_api_calls_total`."""
    total = writes = 0.0
    for line in metrics(addr).splitlines():
        if line.startswith("sftp_operator_aws_api_calls_total{"):
            value = float(line.rsplit(" ", 1)[1])
            total += value
            if WRITE.match(re.search(r'operation="([^"]*)"', line).group(1)):
                writes += value
    return total, writes


def run_row(moto, d, n, label):
    """`run` over the converged services: CPU and RSS over resync periods, AWS calls per resync."""
    resync = float(os.environ.get("BENCH_SCALE_RUN_RESYNC", "60"))
    periods = int(os.environ.get("BENCH_SCALE_RUN_PERIODS", "2"))
    addr = f"127.0.0.1:{free_port()}"
    step(f"scale N={n} ({label}): run, resync {resync:g} s, {periods} periods")
    p = subprocess.Popen([BIN, "run", "-f", d, "--resync", f"{resync:g}s", "--metrics-addr", addr,
                          "--manifest-poll", "1h"], env=moto.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "sftp_operator_last_successful_reconcile_timestamp_seconds{" in metrics(addr), 600,
                 "the first batched pass")
        time.sleep(resync / 2)  # between passes: the window holds whole passes
        cpu0, _ = proc_stats(p.pid)
        calls0, writes0 = api_calls(addr)
        t0 = time.monotonic()
        time.sleep(resync * periods)
        cpu1, rss = proc_stats(p.pid)
        calls1, writes1 = api_calls(addr)
        took = time.monotonic() - t0
        hwm = next(int(l.split()[1]) for l in open(f"/proc/{p.pid}/status") if l.startswith("VmHWM"))
    finally:
        p.terminate()
        p.wait()
    cpu = 100 * (cpu1 - cpu0) / took
    per = (calls1 - calls0) / periods
    step(f"scale N={n}: run: {cpu:.1f}% of a core, RSS {rss / 1024:.0f} MiB (peak {hwm / 1024:.0f}), {per:.0f} calls per resync")
    return (f"| {n} | {label} | `run`, resync {resync:g} s, {periods} passes | ok | {took:.0f} | {per:.0f} per resync | "
            f"{(writes1 - writes0) / periods:.0f} | {hwm / 1024:.0f} (now {rss / 1024:.0f}) | {cpu:.1f}% of a core | |")


def scale():
    """N services on one security group (3 client CIDRs each + the NLB's 2 subnets), one zone."""
    import shutil
    tmp = tempfile.mkdtemp()
    global BIN
    # One binary for the whole table, even if it is rebuilt meanwhile.
    snap = os.path.join(tmp, "sftp-operator")
    shutil.copy2(BIN, snap)
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.stat(BIN).st_mtime))
    BIN = snap
    sets = [(n, False) for n in ns_from_env("BENCH_SCALE_NS", "1,20,100,500")]
    sets += [(n, True) for n in ns_from_env("BENCH_SCALE_GENERATE_NS", "1,20")]
    rows, started, partial = [], time.monotonic(), ""
    try:
        for n, generate in sets:
            try:
                for row in scale_rows(n, generate, tmp):
                    rows.append(row)
            except Exception as e:  # the emulator or the harness, not the operator: keep the other N
                step(f"scale N={n}: {type(e).__name__}: {e}")
                rows.append(f"| {n} | {'generated' if generate else 'shared secret'} | – | bench error: "
                            f"{type(e).__name__}: {str(e)[:120]} | | | | | | |".replace("\n", " "))
    except KeyboardInterrupt:
        partial = " INTERRUPTED, partial"
    pages = ("AWS's page sizes for ECS ListServices (10) and ELB DescribeTargetGroups/DescribeListeners (400)"
             if SCALE_PAGED else "moto's own page sizes")
    print(f"\nsftp-operator scale (moto on 127.0.0.1 with {pages}; debug build of {built}; this machine; "
          f"all services on one security group, {len(SCALE_CIDRS)} client CIDRs each; {time.monotonic() - started:.0f} s in all{partial}):\n")
    print("| N | host keys | converge | result | wall s | calls | writes | peak RSS MiB | calls per AWS service; top operations | paged reads > 1 call |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["moto-paged"]:
        moto_paged(sys.argv[2:])
    else:
        scale() if sys.argv[1:] == ["scale"] else main()
