#!/usr/bin/env python3
"""Vars for site.yml: N services as scripts/bench.py's `scale` mode declares them.

  gen_vars.py N WORLD.json > vars.yml

WORLD.json is what scripts/sandbox.py prints (vpc, subnets, securityGroup, loadBalancerArn,
publicZone). Service i: name bench-i, host port 20000+i, listener port 2000+i, one user `u`
(uid 1000, directory upload), client CIDRs SCALE_CIDRS, record bench-i.example.edu. in the
public zone. The output is JSON, which is YAML too.
"""
import json
import sys

# scripts/bench.py's SCALE_CIDRS.
SCALE_CIDRS = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
# What scripts/sandbox.py names its security group and load balancer.
SG_NAME, SG_DESCRIPTION, NLB_NAME = "sftp-instances", "ECS container instances", "sftp"


def vars_for(n, world):
    return {
        "aws_region": "us-east-1",
        "ecs_cluster": world.get("cluster", "sftp"),
        "vpc_id": world["vpc"],
        "instance_security_group": {"name": SG_NAME, "description": SG_DESCRIPTION},
        "nlb": {"name": NLB_NAME, "subnets": world["subnets"], "scheme": "internet-facing"},
        "dns_zone_id": world["publicZone"],
        "execution_role_arn": "arn:aws:iam::123456789012:role/x",
        "sftp_image": "atmoz/sftp:debian",
        "sftp_host_root": "/mnt/sftp",
        "sftp_log_group": "/ecs/sftp",
        # The seed's two lists: users with ids, and per service the names of its users.
        "sftp_users": {"u": {"uid": 1000, "directories": ["upload"]}},
        "sftp_services": [
            {
                "name": f"bench-{i}",
                "port": 20000 + i,
                "listener_port": 2000 + i,
                "desired_count": 1,
                "users": ["u"],
                "allowed_cidrs": SCALE_CIDRS,
                "record": f"bench-{i}.example.edu.",
            }
            for i in range(n)
        ],
    }


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    json.dump(vars_for(int(sys.argv[1]), json.load(open(sys.argv[2]))), sys.stdout, indent=2)
    print()
