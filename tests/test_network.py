"""Network component under mocks: subnets, tags, NAT, S3 endpoint, flow logs, args validation."""

from __future__ import annotations

import dataclasses

import pytest

from components.errors import ArgsError
from components.network import Network, NetworkArgs, subnet_cidrs, validate_network_args
from tests.harness import inputs, of_type, one, run_component

TAGS = {"project": "llmserving", "stack": "test", "environment": "dev", "tier": "small"}
ZONES3 = ["us-east-1a", "us-east-1b", "us-east-1c"]

SUBNET = "aws:ec2/subnet:Subnet"
ROUTE_TABLE = "aws:ec2/routeTable:RouteTable"
NAT = "aws:ec2/natGateway:NatGateway"
EIP = "aws:ec2/eip:Eip"


def args(**over) -> NetworkArgs:
    base = NetworkArgs(vpc_cidr="10.40.0.0/16", zones=ZONES3[:2], nat_gateways="single", region="us-east-1",
                       cluster_names=["llmserving-test"], flow_log_retention_days=14, tags=TAGS)
    return dataclasses.replace(base, **over)


def build(a: NetworkArgs):
    return run_component(lambda: Network("net", a))


@pytest.fixture(scope="module")
def single():
    return build(args())


@pytest.fixture(scope="module")
def per_zone():
    return build(args(zones=ZONES3, nat_gateways="per-zone", vpc_cidr="10.50.0.0/16"))


def by_name(run, typ):
    return {r.name: inputs(r) for r in of_type(run, typ)}


def test_component_type_and_parenting(single):
    comp = one(single, "llmserving:network:Network", "net")
    children = [r for r in single.registrations if r is not comp]
    assert children and all(r.parent == comp.urn for r in children), \
        [r.name for r in children if r.parent != comp.urn]


def test_vpc(single):
    vpc = inputs(one(single, "aws:ec2/vpc:Vpc", "net-vpc"))
    assert vpc["cidrBlock"] == "10.40.0.0/16"
    assert vpc["enableDnsHostnames"] is True and vpc["enableDnsSupport"] is True
    assert vpc["tags"] == {**TAGS, "Name": "net-vpc"}


def test_subnet_cidrs_function():
    private, public = subnet_cidrs("10.40.0.0/16", 3)
    assert private == ["10.40.0.0/20", "10.40.16.0/20", "10.40.32.0/20"]
    assert public == ["10.40.208.0/20", "10.40.224.0/20", "10.40.240.0/20"]
    private, public = subnet_cidrs("10.0.0.0/20", 2)
    assert private == ["10.0.0.0/24", "10.0.1.0/24"] and public == ["10.0.14.0/24", "10.0.15.0/24"]


def test_subnets_per_zone_with_cidrs(per_zone):
    subnets = by_name(per_zone, SUBNET)
    assert sorted(subnets) == sorted([f"net-{kind}-{z}" for kind in ("private", "public") for z in ZONES3])
    expected = {
        "net-private-us-east-1a": "10.50.0.0/20", "net-private-us-east-1b": "10.50.16.0/20",
        "net-private-us-east-1c": "10.50.32.0/20", "net-public-us-east-1a": "10.50.208.0/20",
        "net-public-us-east-1b": "10.50.224.0/20", "net-public-us-east-1c": "10.50.240.0/20",
    }
    assert {n: s["cidrBlock"] for n, s in subnets.items()} == expected
    for name, s in subnets.items():
        assert s["availabilityZone"] == name.split("-", 2)[2]
        assert s.get("mapPublicIpOnLaunch", False) is False
        assert s["vpcId"]  # wired to the VPC


def test_private_subnet_tags_for_karpenter_and_internal_elb(single):
    for zone in ZONES3[:2]:
        tags = by_name(single, SUBNET)[f"net-private-{zone}"]["tags"]
        assert tags == {**TAGS, "Name": f"net-private-{zone}", "kubernetes.io/role/internal-elb": "1",
                        "kubernetes.io/cluster/llmserving-test": "shared", "karpenter.sh/discovery": "llmserving-test"}


def test_public_subnet_tags_for_elb_without_karpenter(single):
    for zone in ZONES3[:2]:
        tags = by_name(single, SUBNET)[f"net-public-{zone}"]["tags"]
        assert tags == {**TAGS, "Name": f"net-public-{zone}", "kubernetes.io/role/elb": "1",
                        "kubernetes.io/cluster/llmserving-test": "shared"}


def test_no_cluster_no_discovery_tags():
    run = build(args(cluster_names=[]))
    for s in by_name(run, SUBNET).values():
        assert not any(k.startswith(("kubernetes.io/cluster/", "karpenter.sh/")) for k in s["tags"])


def test_single_nat(single):
    nats = of_type(single, NAT)
    assert [n.name for n in nats] == ["net-nat-us-east-1a"]
    assert len(of_type(single, EIP)) == 1
    public_a = one(single, SUBNET, "net-public-us-east-1a")
    assert nats[0].property_dependencies["subnetId"] == [public_a.urn]
    # every private route table goes out through the one NAT
    routes = [inputs(r)["routes"] for r in of_type(single, ROUTE_TABLE) if r.name.startswith("net-private-")]
    assert len(routes) == 2
    assert len({r[0]["natGatewayId"] for r in routes}) == 1
    assert all(r == [{"cidrBlock": "0.0.0.0/0", "natGatewayId": r[0]["natGatewayId"]}] for r in routes)


def test_nat_per_zone(per_zone):
    nats = of_type(per_zone, NAT)
    assert sorted(n.name for n in nats) == [f"net-nat-{z}" for z in ZONES3]
    assert len(of_type(per_zone, EIP)) == 3
    for e in of_type(per_zone, EIP):
        assert inputs(e)["domain"] == "vpc"
    routes = {r.name: inputs(r)["routes"][0]["natGatewayId"] for r in of_type(per_zone, ROUTE_TABLE)
              if r.name.startswith("net-private-")}
    assert len(routes) == 3 and len(set(routes.values())) == 3


def test_nat_waits_for_the_internet_gateway(single):
    igw = one(single, "aws:ec2/internetGateway:InternetGateway")
    nat = one(single, NAT)
    assert igw.urn in nat.dependencies


def test_public_route_table_uses_internet_gateway(single):
    rt = inputs(one(single, ROUTE_TABLE, "net-public-rt"))
    assert len(rt["routes"]) == 1 and rt["routes"][0]["gatewayId"]
    assocs = by_name(single, "aws:ec2/routeTableAssociation:RouteTableAssociation")
    assert sorted(assocs) == sorted([f"net-{k}-{z}" for k in ("private", "public") for z in ZONES3[:2]])


def test_s3_gateway_endpoint_on_private_route_tables(per_zone):
    ep = one(per_zone, "aws:ec2/vpcEndpoint:VpcEndpoint", "net-s3")
    e = inputs(ep)
    assert e["serviceName"] == "com.amazonaws.us-east-1.s3"
    assert e["vpcEndpointType"] == "Gateway"
    assert len(e["routeTableIds"]) == 3
    private_rts = {r.urn for r in of_type(per_zone, ROUTE_TABLE) if r.name.startswith("net-private-")}
    public_rt = one(per_zone, ROUTE_TABLE, "net-public-rt").urn
    # Under preview the ids are unknown; the property dependencies say which tables they are.
    assert set(ep.property_dependencies["routeTableIds"]) == private_rts
    assert public_rt not in ep.property_dependencies["routeTableIds"]
    assert e["tags"] == {**TAGS, "Name": "net-s3"}


def test_s3_gateway_endpoint_can_be_off():
    run = build(args(s3_gateway_endpoint=False))
    assert of_type(run, "aws:ec2/vpcEndpoint:VpcEndpoint") == []


def test_flow_logs(single):
    fl = one(single, "aws:ec2/flowLog:FlowLog", "net-flow-logs")
    f = inputs(fl)
    assert f["trafficType"] == "ALL"
    vpc = one(single, "aws:ec2/vpc:Vpc")
    group = one(single, "aws:cloudwatch/logGroup:LogGroup", "net-flow-logs")
    role = one(single, "aws:iam/role:Role", "net-flow-logs")
    assert fl.property_dependencies["vpcId"] == [vpc.urn]
    assert fl.property_dependencies["logDestination"] == [group.urn]
    assert fl.property_dependencies["iamRoleArn"] == [role.urn]
    g = inputs(group)
    assert g["name"] == "/llmserving/net/vpc-flow-logs" and g["retentionInDays"] == 14
    assert g["tags"] == TAGS
    assert '"vpc-flow-logs.amazonaws.com"' in inputs(role)["assumeRolePolicy"]


def test_every_taggable_resource_carries_the_cost_tags(per_zone):
    # The default security group is AWS's, adopted to strip its rules; it costs nothing.
    untagged = {"llmserving:network:Network", "aws:ec2/routeTableAssociation:RouteTableAssociation",
                "aws:iam/rolePolicy:RolePolicy", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"}
    for r in per_zone.registrations:
        if r.type in untagged:
            continue
        tags = inputs(r).get("tags")
        assert tags and all(tags.get(k) == v for k, v in TAGS.items()), (r.type, r.name)


def test_names_are_deterministic():
    a = sorted((r.type, r.name, str(inputs(r))) for r in build(args()).registrations)
    b = sorted((r.type, r.name, str(inputs(r))) for r in build(args()).registrations)
    assert a == b


# --- args validation: before any child -------------------------------------------------------------

@pytest.mark.parametrize("over,message", [
    ({"vpc_cidr": "10.40.0.0/24"}, "vpc_cidr: got '10.40.0.0/24'; must be an IPv4 CIDR from /16 to /20"),
    ({"vpc_cidr": "10.40.0.300/16"}, "vpc_cidr: got '10.40.0.300/16'; must be an IPv4 CIDR"),
    ({"vpc_cidr": "fd00::/56"}, "vpc_cidr: got 'fd00::/56'; must be an IPv4 CIDR from /16 to /20"),
    ({"zones": ["us-east-1a"]}, "zones: got 1 zones; a GPU VPC spans 2 to 6 zones"),
    ({"zones": ["us-east-1a", "us-east-1a"]}, "zones: got ['us-east-1a', 'us-east-1a']; zones repeat"),
    ({"zones": ["us-east-1a", "us-west-2b"]}, "zones: got 'us-west-2b'; must be a zone of us-east-1"),
    ({"nat_gateways": "none"}, "nat_gateways: got 'none'; allowed: single, per-zone"),
])
def test_bad_args_fail_before_any_child(over, message):
    bad = args(**over)
    with pytest.raises(ArgsError) as info:
        validate_network_args(bad)
    assert info.value.problems == [message]
    assert info.value.component == "Network"
    # The component itself refuses before registering anything.
    registered = []

    def program():
        try:
            Network("net", bad)
        except ArgsError as e:
            registered.append(e)

    run = run_component(program)
    assert len(registered) == 1 and registered[0].problems == [message]
    assert run.registrations == []


def test_all_bad_args_reported_together():
    with pytest.raises(ArgsError) as info:
        validate_network_args(args(vpc_cidr="nope", zones=["us-east-1a", "eu-west-1a"], nat_gateways="many"))
    assert len(info.value.problems) == 3
    assert "invalid Network args:" in str(info.value)
