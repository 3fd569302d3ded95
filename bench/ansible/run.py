#!/usr/bin/env python3
"""The Ansible baseline for sftp-operator's scale table: site.yml against the same emulator.

  python3 bench/ansible/run.py            # N = 1 and 20 (or --ns 1,20,50)

Creates ~/.cache/sftp-operator/ansible-venv (ansible, which bundles amazon.aws and
community.aws, plus boto3), starts moto as scripts/bench.py's `scale` mode does (its Moto class,
AWS's page sizes, the same sandbox world), and per N runs the playbook twice: converge from empty
and again with nothing changed (no-op). Every AWS call goes through a counting proxy in front of
moto. Prints a markdown table: wall time, calls, writes (calls not named Describe/List/Get),
tasks reported changed, and what moto holds afterwards. A benchmark, not a test: not run by
scripts/test.sh or CI.
"""
import argparse
import http.client
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROJECT_PY = os.path.join(ROOT, ".venv/bin/python")
VENV = os.path.expanduser("~/.cache/sftp-operator/ansible-venv")
# ansible 12.3.0 bundles ansible-core 2.19, amazon.aws 10.1.2 and community.aws 10.0.0 (from
# PyPI; Ansible Galaxy is not reachable from this project's machines).
REQUIREMENTS = ["ansible==12.3.0", "boto3", "botocore"]
TIMEOUT = float(os.environ.get("ANSIBLE_BENCH_TIMEOUT", "1800"))  # per playbook run, seconds


def step(msg):
    print(f"ansible-bench: {msg}", file=sys.stderr, flush=True)


def ensure_project_python():
    """bench.Moto needs moto and boto3: run under the project's .venv (scripts/venv.sh makes it)."""
    if os.path.realpath(sys.prefix) == os.path.realpath(os.path.join(ROOT, ".venv")):
        return
    if not os.path.exists(PROJECT_PY):
        subprocess.run([os.path.join(ROOT, "scripts/venv.sh")], check=True)
    os.execv(PROJECT_PY, [PROJECT_PY, os.path.abspath(__file__), *sys.argv[1:]])


def ensure_ansible_venv():
    marker = os.path.join(VENV, ".sftp-operator-requirements")
    want = "\n".join(REQUIREMENTS)
    if os.path.exists(marker) and open(marker).read() == want and os.path.exists(os.path.join(VENV, "bin/ansible-playbook")):
        return
    step(f"creating {VENV} ({' '.join(REQUIREMENTS)}; about a minute)")
    if not os.path.exists(os.path.join(VENV, "bin/pip")):
        subprocess.run(["python3", "-m", "venv", VENV], check=True)
    subprocess.run([os.path.join(VENV, "bin/pip"), "install", "--quiet", *REQUIREMENTS], check=True)
    open(marker, "w").write(want)


def site_packages():
    out = subprocess.run([os.path.join(VENV, "bin/python"), "-c", "import ansible, os; print(os.path.dirname(os.path.dirname(ansible.__file__)))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def versions():
    sp = site_packages()
    core = subprocess.run([os.path.join(VENV, "bin/ansible-playbook"), "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    coll = {}
    for name in ("amazon/aws", "community/aws"):
        coll[name.replace("/", ".")] = json.load(open(os.path.join(sp, "ansible_collections", name, "MANIFEST.json")))["collection_info"]["version"]
    pkgs = subprocess.run([os.path.join(VENV, "bin/python"), "-c",
                           "import ansible_collections, boto3, botocore, importlib.metadata as m; "
                           "print(m.version('ansible'), boto3.__version__, botocore.__version__)"],
                          capture_output=True, text=True, check=True).stdout.split()
    import moto
    return {"ansible": pkgs[0], "ansible-core": re.sub(r"^.*core ([^\]]+)\].*$", r"\1", core),
            **coll, "boto3": pkgs[1], "botocore": pkgs[2], "moto": moto.__version__}


# --- counting proxy ---------------------------------------------------------------------------

ROUTE53 = [  # (method, path regex, operation) for Route 53's REST API
    ("GET", r"/2013-04-01/hostedzone/[^/]+/rrset/?$", "ListResourceRecordSets"),
    ("POST", r"/2013-04-01/hostedzone/[^/]+/rrset/?$", "ChangeResourceRecordSets"),
    ("GET", r"/2013-04-01/hostedzone/?$", "ListHostedZones"),
    ("GET", r"/2013-04-01/hostedzone/[^/]+/?$", "GetHostedZone"),
    ("GET", r"/2013-04-01/hostedzonesbyname/?$", "ListHostedZonesByName"),
    ("GET", r"/2013-04-01/change/[^/]+/?$", "GetChange"),
    ("GET", r"/2013-04-01/tags/hostedzone/[^/]+/?$", "ListTagsForResource"),
    ("POST", r"/2013-04-01/tags/hostedzone/[^/]+/?$", "ChangeTagsForResource"),
]


def classify(method, path, headers, body):
    """(AWS service, operation) of one request, from what botocore sends."""
    m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", headers.get("Authorization", ""))
    service = m.group(1) if m else "?"
    target = headers.get("X-Amz-Target")
    if target:
        return service, target.rsplit(".", 1)[-1]
    url = urllib.parse.urlsplit(path)
    for source in (url.query, body.decode("utf-8", "replace") if body else ""):
        action = urllib.parse.parse_qs(source).get("Action")
        if action:
            return service, action[0]
    for meth, pattern, op in ROUTE53:
        if method == meth and re.match(pattern, url.path):
            return service, op
    return service, f"{method} {url.path}"


def is_write(op, method):
    if " " in op:
        return method not in ("GET", "HEAD")
    return not op.startswith(("Describe", "List", "Get"))


class CountingProxy:
    """Forwards every request to moto and records (service, operation, HTTP status)."""

    def __init__(self, upstream):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.calls, self.lock = [], threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                service, op = classify(self.command, self.path, self.headers, body)
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=300)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                with proxy.lock:
                    proxy.calls.append((service, op, resp.status, is_write(op, self.command)))
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self):
        with self.lock:
            calls, self.calls = self.calls, []
        return calls

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# --- scenarios --------------------------------------------------------------------------------


def playbook(moto_env, proxy_url, vars_file, log, extra):
    sp = site_packages()
    env = dict(moto_env, AWS_ENDPOINT_URL=proxy_url, ANSIBLE_COLLECTIONS_PATH=sp, ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", PROFILE_TASKS_SORT_ORDER="none",
               PROFILE_TASKS_TASK_OUTPUT_LIMIT="all")
    env.pop("AWS_URL", None)
    cmd = [os.path.join(VENV, "bin/ansible-playbook"), "-i", "localhost,", "-c", "local",
           "-e", f"@{vars_file}", "-e", f"ansible_python_interpreter={os.path.join(VENV, 'bin/python')}",
           *extra, os.path.join(HERE, "site.yml")]
    t = time.monotonic()
    with open(log, "w") as out:
        try:
            p = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=HERE, timeout=TIMEOUT)
            code = p.returncode
        except subprocess.TimeoutExpired:
            code = f"killed after {TIMEOUT:g} s"
    took = time.monotonic() - t
    text = open(log).read()
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", text)
    recap = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()))) if m else None
    # Tasks reported changed, by task name (one line per loop item in the default callback).
    changed, task = {}, None
    for line in text.splitlines():
        if line.startswith("TASK ["):
            task = line[6:line.index("]")]
        elif line.startswith("changed:") and task:
            changed[task] = changed.get(task, 0) + 1
    fatal = [l for l in text.splitlines() if l.startswith(("fatal:", "failed:"))]
    return {"wall": took, "exit": code, "recap": recap, "changed": changed, "fatal": fatal}


def world_state(moto, world, n):
    """What moto holds after a run: counted from moto directly, not through the proxy."""
    ecs, elb, ec2, r53 = (moto.client(x) for x in ("ecs", "elbv2", "ec2", "route53"))
    arns = []
    for page in ecs.get_paginator("list_services").paginate(cluster="sftp"):
        arns += page["serviceArns"]
    tgs = [t for page in elb.get_paginator("describe_target_groups").paginate() for t in page["TargetGroups"]
           if t["TargetGroupName"].startswith("sftp-bench-")]
    listeners = [l for page in elb.get_paginator("describe_listeners").paginate(LoadBalancerArn=world["loadBalancerArn"])
                 for l in page["Listeners"]]
    rules = [r for r in ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [world["securityGroup"]]}])["SecurityGroupRules"]
             if not r["IsEgress"]]
    records = r53.list_resource_record_sets(HostedZoneId=world["publicZone"], MaxItems="1000")["ResourceRecordSets"]
    a = [r for r in records if r["Type"] == "A" and r["Name"].startswith("bench-")]
    tds = ecs.list_task_definitions()["taskDefinitionArns"]
    return (f"{len(arns)} services, {len(tds)} task defs, {len(tgs)} TGs, {len(listeners)} listeners, "
            f"{len(rules)} ingress rules, {len(a)} A records")


def summary(calls, k=4):
    by_svc, by_op, failed = {}, {}, {}
    for service, op, status, _ in calls:
        by_svc[service] = by_svc.get(service, 0) + 1
        by_op[op] = by_op.get(op, 0) + 1
        if status >= 400:
            failed[f"{op} {status}"] = failed.get(f"{op} {status}", 0) + 1
    desc = lambda d: sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))
    text = " ".join(f"{s} {c}" for s, c in desc(by_svc)) + "; " + ", ".join(f"{o}×{c}" for o, c in desc(by_op)[:k])
    if failed:
        text += "; HTTP errors: " + ", ".join(f"{o}×{c}" for o, c in desc(failed))
    return text


def rows_for(n, tmp, logs, extra):
    import bench  # scripts/bench.py: Moto, SCALE_PAGED

    step(f"N={n}: starting moto")
    moto = bench.Moto(paged=bench.SCALE_PAGED)
    proxy = CountingProxy(moto.url)
    try:
        world_file = os.path.join(tmp, f"world-{n}.json")
        json.dump(moto.world, open(world_file, "w"))
        vars_file = os.path.join(tmp, f"vars-{n}.json")
        subprocess.run([sys.executable, os.path.join(HERE, "gen_vars.py"), str(n), world_file],
                       stdout=open(vars_file, "w"), check=True)
        for scenario in ("from empty", "no-op"):
            log = os.path.join(logs, f"n{n}-{scenario.replace(' ', '-')}.log")
            step(f"N={n}: ansible-playbook, {scenario} (log: {log})")
            proxy.take()
            r = playbook(moto.env, proxy.url, vars_file, log, extra)
            calls = proxy.take()
            json.dump([{"service": s, "operation": o, "status": st, "write": w} for s, o, st, w in calls],
                      open(log[:-4] + "-calls.json", "w"), indent=1)
            writes = sum(1 for c in calls if c[3])
            ok = r["exit"] == 0 and r["recap"] and r["recap"]["failed"] == 0
            state = world_state(moto, moto.world, n)
            result = ("ok" if ok else f"exit {r['exit']}: " + (r["fatal"][0][:140] if r["fatal"] else "")) + f" ({state})"
            changed = ", ".join(f"{t}×{c}" for t, c in r["changed"].items()) or "none"
            step(f"N={n}: {scenario}: {r['wall']:.1f} s, {len(calls)} calls ({writes} writes), exit {r['exit']}, changed: {changed}")
            yield (f"| {n} | {scenario} | {result.replace('|', '/')} | {r['wall']:.1f} | {len(calls)} | {writes} | "
                   f"{r['recap']['changed'] if r['recap'] else '–'} | {summary(calls)} |")
    finally:
        proxy.stop()
        moto.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", default=os.environ.get("ANSIBLE_BENCH_NS", "1,20"), help="service counts, comma-separated")
    ap.add_argument("--grace-period", type=int, metavar="S",
                    help="set the ECS services' health-check grace period (moto drops it: every run then updates)")
    args = ap.parse_args()
    extra = ["-e", f"ecs_health_check_grace_period={args.grace_period}"] if args.grace_period is not None else []
    ensure_project_python()
    ensure_ansible_venv()
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import bench  # noqa: F401  (sets the testing credentials and region in os.environ)

    v = versions()
    tmp = tempfile.mkdtemp(prefix="ansible-bench-")
    logs = os.path.expanduser("~/.cache/sftp-operator/ansible-bench-logs")
    os.makedirs(logs, exist_ok=True)
    rows, started = [], time.monotonic()
    for n in [int(x) for x in args.ns.split(",") if x.strip()]:
        try:
            rows.extend(rows_for(n, tmp, logs, extra))
        except Exception as e:  # the emulator or the harness: keep the other N
            step(f"N={n}: {type(e).__name__}: {e}")
            rows.append(f"| {n} | – | bench error: {type(e).__name__}: {str(e)[:160]} | | | | | |".replace("\n", " "))
    print(f"\nAnsible baseline (bench/ansible/site.yml; {', '.join(f'{k} {x}' for k, x in v.items())}; "
          f"moto on 127.0.0.1 with {'AWS page sizes' if __import__('bench').SCALE_PAGED else 'its own page sizes'}; "
          f"{'health-check grace period ' + str(args.grace_period) + ' s; ' if extra else ''}this machine; all services on one security group, 3 client CIDRs + 2 NLB subnets each; "
          f"{time.monotonic() - started:.0f} s in all; logs in {logs}):\n")
    print("| N | run | result (moto afterwards) | wall s | calls | writes | tasks changed | calls per AWS service; top operations |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
