"""Network exposure: what the internet can reach, and where the GPU nodes and tasks sit.

The only public door is the internet-facing ALB on 443 (and 80, which redirects): its WAF, TLS policy
and admin-path deny guard every request. Security groups, public subnets or public IPs on the nodes or
tasks, a Kubernetes Service of type LoadBalancer/NodePort, or a model pod without a NetworkPolicy
would bypass it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterator, Optional

from rules.common import (EC2_INSTANCE, EC2NODECLASS, Res, UNKNOWN, as_list, first_unknown, fmt, get,
                          is_serving_workload, num, of_type, pod_labels, refers_to, resource_policy, stack_policy,
                          workload_label)
from rules.ecs import ECS_SERVICE

SG = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SG_EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
LB = "aws:lb/loadBalancer:LoadBalancer"
SUBNET = "aws:ec2/subnet:Subnet"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
ROUTE = "aws:ec2/route:Route"
ROUTE_ASSOC = "aws:ec2/routeTableAssociation:RouteTableAssociation"
IGW = "aws:ec2/internetGateway:InternetGateway"
NODEGROUP = "aws:eks/nodeGroup:NodeGroup"
ASG = "aws:autoscaling/group:Group"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SERVICE = "kubernetes:core/v1:Service"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
ALB_PORTS = (80, 443)


def _world(cidr: Any) -> bool:
    try:
        return isinstance(cidr, str) and ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def _all_protocols(protocol: Any) -> bool:
    return str(protocol).lower() in ("-1", "all")


def _ports(rule: dict) -> str:
    if _all_protocols(rule.get("protocol")):
        return "all ports"
    lo, hi = num(rule.get("fromPort")), num(rule.get("toPort"))
    return f"port {fmt(lo)}" if lo == hi else f"ports {fmt(lo or 0)}-{fmt(hi or 65535)}"


def _all_ports(rule: dict) -> bool:
    lo, hi = num(rule.get("fromPort")), num(rule.get("toPort"))
    return _all_protocols(rule.get("protocol")) or ((lo or 0) <= 0 and (hi or 0) >= 65535)


class Rule:
    """One security group rule, inline or standalone, normalised to the inline shape."""

    def __init__(self, owner: Res, group: Optional[Res], direction: str, rule: dict, path: str):
        self.owner, self.group, self.direction, self.rule, self.path = owner, group, direction, rule, path

    @property
    def cidrs(self) -> list:
        return [c for c in as_list(self.rule.get("cidrBlocks")) + as_list(self.rule.get("ipv6CidrBlocks"))]

    @property
    def group_label(self) -> str:
        g = self.group or self.owner
        return f"security group '{g.name}'"


def sg_rules(resources: list[Res], report) -> Iterator[Rule]:
    """Every ingress/egress rule of the stack's security groups; unknown rule lists are reported."""
    groups = of_type(resources, SG)
    for sg in groups:
        for direction in ("ingress", "egress"):
            rules = sg.get(direction)
            if rules is UNKNOWN:
                report.unjudged(f"security group '{sg.name}'", direction, sg.urn)
                continue
            for i, r in enumerate(as_list(rules)):
                if isinstance(r, dict):
                    yield Rule(sg, sg, direction, r, f"{direction}[{i}]")
    for r in of_type(resources, SG_RULE, SG_INGRESS, SG_EGRESS):
        group = next((g for g in groups if refers_to(r, "securityGroupId", g)), None)
        if r.type == SG_RULE:
            direction = r.get("type")
            rule = {"protocol": r.get("protocol"), "fromPort": r.get("fromPort"), "toPort": r.get("toPort"),
                    "cidrBlocks": r.get("cidrBlocks"), "ipv6CidrBlocks": r.get("ipv6CidrBlocks")}
        else:
            direction = "ingress" if r.type == SG_INGRESS else "egress"
            rule = {"protocol": r.get("ipProtocol"), "fromPort": r.get("fromPort"), "toPort": r.get("toPort"),
                    "cidrBlocks": [r.get("cidrIpv4")] if r.get("cidrIpv4") is not None else [],
                    "ipv6CidrBlocks": [r.get("cidrIpv6")] if r.get("cidrIpv6") is not None else []}
        yield Rule(r, group, direction, rule, "")


def _unknown(rule: Rule) -> Optional[str]:
    found = first_unknown({k: rule.rule.get(k) for k in ("protocol", "fromPort", "toPort")}) \
        or (("cidrBlocks" if UNKNOWN in rule.cidrs or rule.rule.get("cidrBlocks") is UNKNOWN else None))
    if rule.owner.type == SG_RULE and rule.direction is UNKNOWN:
        return "type"
    if found:
        return f"{rule.path}.{found}" if rule.path else found
    return None


def alb_groups(resources: list[Res]) -> tuple[set[str], bool]:
    """URNs of the security groups of internet-facing ALBs, and whether some LB's groups are unknown."""
    out, unsure = set(), False
    groups = of_type(resources, SG)
    for lb in of_type(resources, LB):
        if lb.get("internal") is True or lb.get("loadBalancerType", default="application") != "application":
            continue
        deps = set(lb.prop_deps.get("securityGroups", []))
        ids = as_list(lb.get("securityGroups"))
        if lb.get("securityGroups") is UNKNOWN or (UNKNOWN in ids and not deps):
            unsure = True
        out |= {g.urn for g in groups if g.urn in deps or (g.get("id") in ids and g.get("id") is not None)}
    return out, unsure


def _world_ingress(resources: list[Res], cfg: dict, report) -> None:
    albs, unsure = alb_groups(resources)
    for rule in sg_rules(resources, report):
        if rule.direction != "ingress":
            continue
        where = _unknown(rule)
        if where:
            report.unjudged(rule.group_label, where, rule.owner.urn)
            continue
        world = [c for c in rule.cidrs if _world(c)]
        if not world:
            continue
        lo, hi = num(rule.rule.get("fromPort")), num(rule.rule.get("toPort"))
        tcp = str(rule.rule.get("protocol")).lower() in ("tcp", "6")
        alb_port = tcp and lo == hi and lo in ALB_PORTS
        if alb_port and rule.group is not None and rule.group.urn in albs:
            continue
        if alb_port and unsure:
            report.unjudged(rule.group_label, "securityGroups of the load balancer", rule.owner.urn)
            continue
        report(f"{rule.group_label} admits {', '.join(world)} on {_ports(rule.rule)} ({rule.rule.get('protocol')}); only "
               f"an internet-facing ALB's security group may take 443/80 from the internet (AVD-AWS-0107)",
               rule.owner.urn)


world_ingress = stack_policy(
    "sg-no-world-ingress",
    "Security groups admit 0.0.0.0/0 or ::/0 only on an internet-facing ALB's 443 and 80 (Trivy AVD-AWS-0107; "
    "Checkov CKV_AWS_24/CKV_AWS_25 for ports 22/3389).",
    _world_ingress, types=[SG, SG_RULE, SG_INGRESS])


def _all_traffic(resources: list[Res], cfg: dict, report) -> None:
    for rule in sg_rules(resources, report):
        if rule.direction != "ingress":
            continue
        where = _unknown(rule)
        if where:
            report.unjudged(rule.group_label, where, rule.owner.urn)
            continue
        cidrs = [c for c in rule.cidrs if isinstance(c, str)]
        if cidrs and _all_ports(rule.rule):
            report(f"{rule.group_label} admits all traffic ({_ports(rule.rule)}, protocol {rule.rule.get('protocol')}) "
                   f"from {', '.join(cidrs)}; open only the ports a service listens on", rule.owner.urn)


all_traffic = stack_policy(
    "sg-no-all-traffic-ingress",
    "No security group rule admits all traffic (protocol -1 or ports 0-65535) from a CIDR range (Trivy AVD-AWS-0107).",
    _all_traffic, types=[SG, SG_RULE, SG_INGRESS])


def _alb_egress(resources: list[Res], cfg: dict, report) -> None:
    albs, _ = alb_groups(resources)
    for rule in sg_rules(resources, report):
        if rule.direction != "egress" or rule.group is None or rule.group.urn not in albs:
            continue
        where = _unknown(rule)
        if where:
            report.unjudged(rule.group_label, where, rule.owner.urn)
            continue
        world = [c for c in rule.cidrs if _world(c)]
        if world and _all_ports(rule.rule):
            report(f"ALB {rule.group_label} sends anything anywhere ({_ports(rule.rule)} to {', '.join(world)}); the ALB "
                   f"only talks to its targets: allow their port to the VPC (AVD-AWS-0104)", rule.owner.urn)


alb_egress = stack_policy(
    "alb-egress-restricted",
    "An internet-facing ALB's security group does not allow egress to the world on all ports (Trivy AVD-AWS-0104).",
    _alb_egress, types=[SG, SG_RULE, SG_EGRESS])


# --- where compute sits -------------------------------------------------------------------

def public_subnets(resources: list[Res], report) -> tuple[dict[str, Res], dict[str, Res], bool]:
    """(public subnets by URN, every subnet by URN and by id value, whether some subnet's exposure is unknown).

    A subnet is public when it assigns public IPs, is tagged for internet-facing load balancers, or its route
    table sends 0.0.0.0/0 or ::/0 to an internet gateway (VPC user guide, "Subnet types")."""
    subnets = {s.urn: s for s in of_type(resources, SUBNET)}
    index: dict[str, Res] = dict(subnets)
    igws = {g.urn for g in of_type(resources, IGW)}
    tables = {t.urn: t for t in of_type(resources, ROUTE_TABLE)}
    public_tables, unsure = set(), False
    for t in tables.values():
        routes = t.get("routes")
        if routes is UNKNOWN:
            unsure = True
        for rt in as_list(routes):
            if isinstance(rt, dict) and (_world(rt.get("cidrBlock")) or _world(rt.get("ipv6CidrBlock"))):
                gw = rt.get("gatewayId")
                if (isinstance(gw, str) and gw.startswith("igw-")) or (gw not in (None, UNKNOWN) and igws
                                                                       and set(t.prop_deps.get("routes", [])) & igws):
                    public_tables.add(t.urn)
    for r in of_type(resources, ROUTE):
        if _world(r.get("destinationCidrBlock")) or _world(r.get("destinationIpv6CidrBlock")):
            gw = r.get("gatewayId")
            if (isinstance(gw, str) and gw.startswith("igw-")) or set(r.prop_deps.get("gatewayId", [])) & igws:
                public_tables |= {u for u in r.prop_deps.get("routeTableId", []) if u in tables}
    public: dict[str, Res] = {}
    for s in subnets.values():
        tags = s.get("tags", default={})
        if s.get("mapPublicIpOnLaunch") is True or (isinstance(tags, dict) and tags.get("kubernetes.io/role/elb") == "1"):
            public[s.urn] = s
        elif s.get("mapPublicIpOnLaunch") is UNKNOWN or tags is UNKNOWN:
            unsure = True
    for a in of_type(resources, ROUTE_ASSOC):
        sub = next((subnets[u] for u in a.prop_deps.get("subnetId", []) if u in subnets), None)
        if sub is None:
            continue
        if isinstance(a.get("subnetId"), str):
            index[a.get("subnetId")] = sub
        if set(a.prop_deps.get("routeTableId", [])) & public_tables:
            public[sub.urn] = sub
    return public, index, unsure


def _subnets_named(r: Res, key: str, values: list, index: dict[str, Res]) -> tuple[list[Res], bool]:
    found = {u: index[u] for u in r.prop_deps.get(key, []) if u in index and index[u].type == SUBNET}
    unresolved = False
    for v in values:
        if isinstance(v, str) and v in index:
            found[index[v].urn] = index[v]
        elif v is UNKNOWN and not found:
            unresolved = True
    return list(found.values()), unresolved


def _selected_by_terms(terms: Any, subnets: list[Res], index: dict[str, Res]) -> tuple[list[Res], bool]:
    """Subnets an EC2NodeClass's subnetSelectorTerms select (by tags or id; Karpenter v1 EC2NodeClass API, a tag
    value "*" matches any value), and whether the terms are unknown."""
    if terms is UNKNOWN or first_unknown(terms) is not None:
        return [], True
    out = [index[t["id"]] for t in as_list(terms) if isinstance(t, dict) and t.get("id") in index]
    for s in subnets:
        tags = s.get("tags", default={}) or {}
        for t in as_list(terms):
            if not isinstance(t, dict):
                continue
            want = t.get("tags") or {}
            if want and isinstance(want, dict) and isinstance(tags, dict) and all(k in tags and (v == "*" or tags.get(k) == v) for k, v in want.items()):
                out.append(s)
                break
    return out, False


def _private_compute(resources: list[Res], cfg: dict, report) -> None:
    public, index, unsure = public_subnets(resources, report)
    subnets = of_type(resources, SUBNET)

    def judge(r: Res, label: str, key: str, values: Any) -> None:
        if values is UNKNOWN:
            report.unjudged(label, key, r.urn)
            return
        found, unresolved = _subnets_named(r, key, as_list(values), index)
        if unresolved:
            report.unjudged(label, key, r.urn)
            return
        bad = [s for s in found if s.urn in public]
        if bad:
            report(f"{label} places nodes or tasks in public subnet(s) {', '.join(repr(s.name) for s in bad)}; they must "
                   f"sit in private subnets behind the ALB and NAT", r.urn)
        elif unsure and found:
            report.unjudged(label, f"{key} (whether its subnets are public)", r.urn)

    for r in of_type(resources, NODEGROUP):
        judge(r, f"node group '{r.get('nodeGroupName', default=r.name)}'", "subnetIds", r.get("subnetIds"))
    for r in of_type(resources, ASG):
        judge(r, f"auto scaling group '{r.name}'", "vpcZoneIdentifiers", r.get("vpcZoneIdentifiers"))
    for r in of_type(resources, EC2_INSTANCE):
        label = f"EC2 instance '{r.name}'"
        if r.get("associatePublicIpAddress") is True:
            report(f"{label} gets a public IP (associatePublicIpAddress); GPU nodes stay private", r.urn)
        elif r.get("associatePublicIpAddress") is UNKNOWN:
            report.unjudged(label, "associatePublicIpAddress", r.urn)
        judge(r, label, "subnetId", r.get("subnetId"))
    for r in of_type(resources, LAUNCH_TEMPLATE):
        for i, ni in enumerate(as_list(r.get("networkInterfaces"))):
            value = ni.get("associatePublicIpAddress") if isinstance(ni, dict) else None
            if value is UNKNOWN:
                report.unjudged(f"launch template '{r.name}'", f"networkInterfaces[{i}].associatePublicIpAddress", r.urn)
            elif str(value).lower() == "true":
                report(f"launch template '{r.name}' gives its instances public IPs (networkInterfaces[{i}]."
                       f"associatePublicIpAddress); GPU nodes stay private", r.urn)
    for r in of_type(resources, EC2NODECLASS):
        label = f"EC2NodeClass '{r.name}'"
        if r.get("spec", "associatePublicIPAddress") is True:
            report(f"{label} gives its nodes public IPs (spec.associatePublicIPAddress); GPU nodes stay private", r.urn)
        selected, unknown = _selected_by_terms(r.get("spec", "subnetSelectorTerms"), subnets, index)
        if unknown:
            report.unjudged(label, "spec.subnetSelectorTerms", r.urn)
            continue
        bad = [s for s in selected if s.urn in public]
        if bad:
            report(f"{label} selects public subnet(s) {', '.join(repr(s.name) for s in bad)} (spec.subnetSelectorTerms); "
                   f"Karpenter would launch GPU nodes there", r.urn)
    for r in of_type(resources, ECS_SERVICE):
        label = f"ECS service '{r.name}'"
        net = r.get("networkConfiguration")
        if net is UNKNOWN:
            report.unjudged(label, "networkConfiguration", r.urn)
            continue
        if not isinstance(net, dict):
            continue
        if net.get("assignPublicIp") is True:
            report(f"{label} gives its tasks public IPs (networkConfiguration.assignPublicIp); tasks stay private "
                   f"behind the ALB", r.urn)
        elif net.get("assignPublicIp") is UNKNOWN:
            report.unjudged(label, "networkConfiguration.assignPublicIp", r.urn)
        judge(r, label, "networkConfiguration", net.get("subnets"))


private_compute = stack_policy(
    "compute-in-private-subnets",
    "Node groups, Auto Scaling groups, EC2 instances, EC2NodeClasses and ECS services place GPU nodes and tasks in "
    "private subnets, without public IPs (Checkov CKV_AWS_88 for instances; Trivy AVD-AWS-0164 for subnets).",
    _private_compute, types=[NODEGROUP, ASG, EC2_INSTANCE, LAUNCH_TEMPLATE, EC2NODECLASS, ECS_SERVICE])


def _service_exposed(r: Res, cfg: dict, report) -> None:
    kind = r.get("spec", "type")
    name = r.get("metadata", "name", default=r.name)
    ns = r.get("metadata", "namespace", default="default")
    if kind is UNKNOWN:
        report.unjudged(f"Service {ns}/{name}", "spec.type")
    elif kind in ("LoadBalancer", "NodePort"):
        report(f"Service {ns}/{name} is of type {kind}: it opens a path to the pods that bypasses the ALB, its WAF and "
               f"TLS; use ClusterIP behind the TargetGroupBinding")


service_exposed = resource_policy(
    "k8s-service-not-exposed",
    "Kubernetes Services are ClusterIP (or headless): no LoadBalancer or NodePort that bypasses the ALB, WAF and TLS.",
    _service_exposed, types=[SERVICE])


def _selects(pol: Res, labels: dict) -> Optional[bool]:
    sel = pol.get("spec", "podSelector")
    if sel is UNKNOWN or first_unknown(sel) is not None:
        return None
    if not isinstance(sel, dict):
        return False
    match = sel.get("matchLabels") or {}
    exprs = sel.get("matchExpressions") or []
    if not isinstance(match, dict):
        return False
    if exprs:
        return None if not match else all(labels.get(k) == v for k, v in match.items()) or False
    return all(labels.get(k) == v for k, v in match.items())  # {} selects every pod of the namespace


def _admits_all(pol: Res) -> Optional[str]:
    """Why an ingress policy admits everyone (None: it restricts)."""
    types = as_list(pol.get("spec", "policyTypes"))
    if types and "Ingress" not in types:
        return "it does not govern ingress (policyTypes)"
    for i, rule in enumerate(as_list(pol.get("spec", "ingress"))):
        if not isinstance(rule, dict):
            continue
        peers = rule.get("from")
        if not peers:
            return f"ingress[{i}] has no `from`, which admits every source"
        for peer in as_list(peers):
            if not isinstance(peer, dict):
                continue
            if _world(get(peer, "ipBlock", "cidr")):
                return f"ingress[{i}] admits ipBlock {get(peer, 'ipBlock', 'cidr')}"
            ns, pods = peer.get("namespaceSelector"), peer.get("podSelector")
            if ns == {} and (pods is None or pods == {}):
                return f"ingress[{i}] admits every pod of every namespace (namespaceSelector {{}})"
    return None


def _model_netpol(resources: list[Res], cfg: dict, report) -> None:
    policies = of_type(resources, NETPOL)
    for w in (x for x in resources if is_serving_workload(x)):
        ns = w.get("metadata", "namespace", default="default")
        labels = pod_labels(w)
        covering, unsure, open_ = [], None, []
        for p in policies:
            if p.get("metadata", "namespace", default="default") != ns:
                continue
            hit = _selects(p, labels)
            if hit is None:
                unsure = p
            elif hit:
                if first_unknown(p.get("spec", "ingress")) is not None or p.get("spec", "policyTypes") is UNKNOWN:
                    unsure = p
                    continue
                why = _admits_all(p)
                (open_ if why else covering).append((p, why))
        if open_:
            p, why = open_[0]
            report(f"{workload_label(w)}: NetworkPolicy '{p.get('metadata', 'name', default=p.name)}' admits all "
                   f"traffic to the model ({why}); only the router, the load balancer's subnets and Prometheus may "
                   f"reach it", w.urn)
        elif covering:
            continue
        elif unsure is not None:
            report.unjudged(workload_label(w), f"spec of NetworkPolicy '{unsure.name}'", w.urn)
        else:
            report(f"{workload_label(w)} has no NetworkPolicy selecting its pods: every pod in the cluster can call "
                   f"the model and its admin endpoints", w.urn)


model_netpol = stack_policy(
    "model-network-policy",
    "Every model workload is selected by a NetworkPolicy that restricts ingress (no allow-all rule: empty `from`, "
    "0.0.0.0/0, or every namespace).",
    _model_netpol, types=[NETPOL, "kubernetes:apps/v1:Deployment", "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"])

POLICIES = [world_ingress, all_traffic, alb_egress, private_compute, service_exposed, model_netpol]
