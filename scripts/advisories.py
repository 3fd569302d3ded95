#!/usr/bin/env python3
"""RustSec advisories for the crates this project compiles, from a local advisory-db checkout.

    scripts/advisories.py DB_DIR

The crate set is `cargo tree` (normal, build and dev edges; features resolved), not Cargo.lock,
which also lists optional dependencies that are never built (ssh-key's `rsa`). A crate version
is affected unless it matches one of the advisory's `patched` or `unaffected` requirements.
Exits 1 when an unwithdrawn advisory affects a compiled crate (informational ones only warn).
"""
import glob
import re
import subprocess
import sys
import tomllib


def compiled():
    out = subprocess.run(
        ["cargo", "tree", "-e", "normal,build,dev", "--prefix", "none", "--format", "{p}"],
        check=True, capture_output=True, text=True).stdout
    crates = set()
    for line in out.splitlines():
        m = re.match(r"^(\S+) v(\S+)", line)
        if m and "(/" not in line:  # not the workspace crate itself
            crates.add((m.group(1), m.group(2)))
    return crates


def version(v):
    core, _, pre = v.strip().partition("-")
    nums = [int(x) for x in core.split(".")] + [0, 0, 0]
    return (nums[0], nums[1], nums[2], 0 if pre else 1, pre)


def matches(ver, requirement):
    """Cargo requirement syntax as advisories use it: comma-separated `op version` terms."""
    for term in requirement.split(","):
        op, v = re.match(r"\s*(>=|<=|>|<|=|\^|~)?\s*(\S+)", term).groups()
        a, b = version(ver), version(v)
        op = op or "^"
        if op == ">=" and a < b or op == ">" and a <= b or op == "<=" and a > b or op == "<" and a >= b:
            return False
        if op == "=" and a[:3] != b[:3]:
            return False
        if op in "^~":
            nums = [int(x) for x in v.split("-")[0].split(".")]
            # The leftmost non-zero part (for ^) or the major.minor (for ~) must stay.
            keep = 2 if op == "~" else next((i + 1 for i, n in enumerate(nums) if n), len(nums))
            if a < b or list(a[:keep]) != (nums + [0, 0])[:keep]:
                return False
    return True


def main(db):
    crates = compiled()
    findings = warnings = 0
    for name, ver in sorted(crates):
        for path in glob.glob(f"{db}/crates/{name}/*.md"):
            text = open(path).read()
            meta = tomllib.loads(text.split("```toml", 1)[1].split("```", 1)[0])
            adv, versions = meta["advisory"], meta.get("versions", {})
            if adv.get("withdrawn"):
                continue
            fine = versions.get("patched", []) + versions.get("unaffected", [])
            if any(matches(ver, r) for r in fine):
                continue
            title = next((l[2:] for l in text.splitlines() if l.startswith("# ")), "")
            kind = adv.get("informational")
            print(f"{'warning' if kind else 'error'}: {name} {ver}: {adv['id']} {kind or ''} {title}".replace("  ", " "))
            if kind:
                warnings += 1
            else:
                findings += 1
    print(f"{len(crates)} compiled crate versions checked against {db}: "
          f"{findings} advisories, {warnings} informational")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
