"""Filters for the sftp benchmark playbook (bench/ansible/site.yml)."""


def _ranges(ports):
    """Sorted ports collapsed into (first, last) runs: [1, 2, 3, 7] -> [(1, 3), (7, 7)]."""
    out = []
    for p in sorted(set(int(p) for p in ports)):
        if out and p == out[-1][1] + 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return [tuple(r) for r in out]


def sftp_ingress_rules(services, nlb_cidrs, description="sftp (ansible)"):
    """ec2_security_group rules for every service on one group.

    Each service wants its host port open to its allowed CIDRs and to the NLB's subnet CIDRs
    (health checks). Per CIDR the ports of all services collapse into contiguous ranges; CIDRs
    with the same ranges share one rule entry (the module expands cidr_ip lists itself)."""
    ports_by_cidr = {}
    for s in services:
        for cidr in list(s.get("allowed_cidrs", [])) + list(nlb_cidrs):
            ports_by_cidr.setdefault(cidr, set()).add(int(s["port"]))
    cidrs_by_ranges = {}
    for cidr, ports in ports_by_cidr.items():
        cidrs_by_ranges.setdefault(tuple(_ranges(ports)), []).append(cidr)
    rules = []
    for ranges, cidrs in sorted(cidrs_by_ranges.items()):
        for first, last in ranges:
            rules.append({"proto": "tcp", "from_port": first, "to_port": last,
                          "cidr_ip": sorted(cidrs), "rule_desc": description})
    return rules


def sftp_listeners(services):
    """elb_network_lb listeners: each service's listener port forwards to its target group."""
    return [{"Protocol": "TCP", "Port": int(s["listener_port"]),
             "DefaultActions": [{"Type": "forward", "TargetGroupName": f"sftp-{s['name']}"}]}
            for s in services]


class FilterModule:
    def filters(self):
        return {"sftp_ingress_rules": sftp_ingress_rules, "sftp_listeners": sftp_listeners}
