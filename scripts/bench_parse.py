#!/usr/bin/env python3
"""Hostile and large manifest sets through `sftp-operator validate`: wall time and peak memory
(the child's own maxrss from wait4) per input; prints a Markdown table. Not a test: no AWS, no
thresholds asserted.

  scripts/bench.sh parse      # builds the release binary, runs this
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SFTP_OPERATOR_BIN", os.path.join(ROOT, "target/debug/sftp-operator"))
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFIoKsJjFWreGcAuiHllsitYI/zAomIvsiDu9IwEUlwH alice@example.edu"


def service(i):
    """A small valid SftpService (~700 bytes), distinct name and host port per index."""
    return f"""apiVersion: sftp-operator/v1alpha1
kind: SftpService
metadata:
  name: svc-{i}
  labels: {{team: research}}
spec:
  cluster: c{i // 10000}
  image: atmoz/sftp:alpine
  port: {1024 + i % 10000}
  users:
    - name: alice
      uid: 1001
      directories: [upload]
      keys:
        - {KEY}
  storage:
    efs: {{fileSystemId: fs-0123456789abcdef0}}
  executionRoleArn: arn:aws:iam::123456789012:role/sftp-exec
  loadBalancer:
    arn: arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/net/sftp/0123456789abcdef
    listenerPort: {1 + i % 60000}
  access:
    securityGroupId: sg-0123456789abcdef0
    allowedCidrs: [192.0.2.0/24]
"""


def documents(n):
    return "---\n".join(service(i) for i in range(n))


def inputs():
    yield "explicit 100 kB key over a 20 000-item list", "? " + "k" * 100_000 + "\n: [" + ",".join(["x"] * 20_000) + "]\n"
    yield "100 kB of blank lines, then 20 000 `---`", "\n" * 100_000 + "---\n" * 20_000
    yield "deep nesting: 10 000 `[`", "a: " + "[" * 10_000 + "]" * 10_000 + "\n"
    user = "{name: a, uid: 1001, directories: [a, b, c, d, e, f, g, h]}"
    aliased = service(0).replace("  users:\n", f"  users: [&u {user}, " + ", ".join(["*u"] * 20_000) + "]\n  unused:\n")
    yield "one user repeated by 20 000 aliases (240 000 nodes expanded)", aliased
    yield "one 10 MB list of tiny items", "spec: [" + ",".join(["1"] * 5_000_000) + "]\n"
    yield "one 10 MB label value", "metadata:\n  labels:\n    x: " + "v" * 10_000_000 + "\n"
    yield "4 000 valid documents", documents(4_000)
    yield "10 000 valid documents", documents(10_000)
    n = 10_000_000 // len(service(0))
    yield f"{n} valid documents (10 MB)", documents(n)
    yield "20 MB (over the 16 MiB input limit)", "#" * 20_000_000 + "\n"


def run(text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        start = time.monotonic()
        proc = subprocess.Popen([BIN, "validate", "-f", f.name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
    finally:
        os.unlink(f.name)
    lines = [l for l in out.splitlines() if l.strip()]
    first = next((l for l in lines if l.startswith("error:")), lines[-1] if lines else "")
    code = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, code, first.replace(f.name, "<file>")[:110]


def main():
    print(f"binary: {BIN}")
    print("| input | size | exit | time | peak RSS | first line |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, text in inputs():
        wall, rss, code, first = run(text)
        size = len(text.encode())
        print(f"| {name} | {size / 1e6:.2f} MB | {code} | {wall:.2f} s | {rss:.0f} MiB | `{first}` |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
