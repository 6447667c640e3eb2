"""Network: a VPC across zones with public and private subnets.

Private subnets hold GPU nodes and carry the Karpenter discovery tag and the
internal-ELB role tag; public subnets hold load balancers. NAT is one per
zone (survives a zone outage) or a single shared one (cheap, for dev). An S3
gateway endpoint keeps model-weight and adapter traffic off NAT, which bills
per GB.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Literal, Optional

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError
from components.iam_trust import flow_logs_trust


@dataclass(frozen=True)
class NetworkArgs:
    vpc_cidr: str
    zones: list[str]
    nat_gateways: Literal["single", "per-zone"] = "single"
    s3_gateway_endpoint: bool = True
    region: str = "us-east-1"
    # Cluster names for the discovery tags Karpenter and the AWS Load
    # Balancer Controller look for.
    cluster_names: list[str] = field(default_factory=list)
    flow_log_retention_days: int = 30
    # Account of the flow log (its role's confused-deputy condition); looked up when None.
    account_id: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)


def subnet_cidrs(vpc_cidr: str, zone_count: int) -> tuple[list[str], list[str]]:
    """(private, public) CIDRs: 16 equal blocks, private from the front, public from the back."""
    blocks = list(ipaddress.ip_network(vpc_cidr).subnets(prefixlen_diff=4))
    return [str(b) for b in blocks[:zone_count]], [str(b) for b in blocks[-zone_count:]]


def validate_network_args(args: NetworkArgs) -> None:
    problems = []
    try:
        net = ipaddress.ip_network(args.vpc_cidr)
        if net.version != 4 or not 16 <= net.prefixlen <= 20:
            problems.append(f"vpc_cidr: got {args.vpc_cidr!r}; must be an IPv4 CIDR from /16 to /20")
    except ValueError:
        problems.append(f"vpc_cidr: got {args.vpc_cidr!r}; must be an IPv4 CIDR")
    if not 2 <= len(args.zones) <= 6:
        problems.append(f"zones: got {len(args.zones)} zones; a GPU VPC spans 2 to 6 zones")
    if len(set(args.zones)) != len(args.zones):
        problems.append(f"zones: got {args.zones}; zones repeat")
    for z in args.zones:
        if not z.startswith(args.region):
            problems.append(f"zones: got {z!r}; must be a zone of {args.region}")
    if args.nat_gateways not in ("single", "per-zone"):
        problems.append(f"nat_gateways: got {args.nat_gateways!r}; allowed: single, per-zone")
    if args.account_id is not None and not (args.account_id.isdigit() and len(args.account_id) == 12):
        problems.append(f"account_id: got {args.account_id!r}; must be a 12-digit AWS account id")
    if problems:
        raise ArgsError("Network", problems)


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: list[pulumi.Output[str]]
    public_subnet_ids: list[pulumi.Output[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_network_args(args)
        super().__init__("llmserving:network:Network", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = lambda extra: {**args.tags, **extra}  # noqa: E731

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.vpc_cidr, enable_dns_hostnames=True, enable_dns_support=True,
                          tags=tags({"Name": f"{name}-vpc"}), opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags({"Name": f"{name}-igw"}), opts=child)
        # The VPC's default security group admits all traffic from itself and
        # out to anywhere; nothing here uses it, so adopt it with no rules
        # (CIS AWS Foundations 5.4, Checkov CKV2_AWS_12). Terraform's
        # aws_default_security_group removes every rule not declared.
        # No tags: it costs nothing, and it is AWS's group, adopted, not created.
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[], opts=child)

        discovery = {f"kubernetes.io/cluster/{c}": "shared" for c in args.cluster_names}
        karpenter = {"karpenter.sh/discovery": args.cluster_names[0]} if args.cluster_names else {}
        private_cidrs, public_cidrs = subnet_cidrs(args.vpc_cidr, len(args.zones))

        public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id,
                                       routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
                                       tags=tags({"Name": f"{name}-public"}), opts=child)
        public_subnets, private_subnets, private_rts, nats = [], [], [], []
        for i, zone in enumerate(args.zones):
            pub = aws.ec2.Subnet(f"{name}-public-{zone}", vpc_id=vpc.id, cidr_block=public_cidrs[i],
                                 availability_zone=zone, map_public_ip_on_launch=False,
                                 tags=tags({"Name": f"{name}-public-{zone}", "kubernetes.io/role/elb": "1", **discovery}),
                                 opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{zone}", subnet_id=pub.id, route_table_id=public_rt.id, opts=child)
            public_subnets.append(pub)
            if args.nat_gateways == "per-zone" or i == 0:
                eip = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", tags=tags({"Name": f"{name}-nat-{zone}"}), opts=child)
                nats.append(aws.ec2.NatGateway(f"{name}-nat-{zone}", allocation_id=eip.id, subnet_id=pub.id,
                                               tags=tags({"Name": f"{name}-nat-{zone}"}),
                                               opts=pulumi.ResourceOptions(parent=self, depends_on=[igw])))

        for i, zone in enumerate(args.zones):
            nat = nats[i] if args.nat_gateways == "per-zone" else nats[0]
            rt = aws.ec2.RouteTable(f"{name}-private-{zone}", vpc_id=vpc.id,
                                    routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                                    tags=tags({"Name": f"{name}-private-{zone}"}), opts=child)
            sub = aws.ec2.Subnet(f"{name}-private-{zone}", vpc_id=vpc.id, cidr_block=private_cidrs[i],
                                 availability_zone=zone,
                                 tags=tags({"Name": f"{name}-private-{zone}", "kubernetes.io/role/internal-elb": "1",
                                            **discovery, **karpenter}),
                                 opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{zone}", subnet_id=sub.id, route_table_id=rt.id, opts=child)
            private_subnets.append(sub)
            private_rts.append(rt)

        if args.s3_gateway_endpoint:
            aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, service_name=f"com.amazonaws.{args.region}.s3",
                                vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in private_rts],
                                tags=tags({"Name": f"{name}-s3"}), opts=child)

        # Flow logs: the record of who talked to the GPU nodes.
        log_group = aws.cloudwatch.LogGroup(f"{name}-flow-logs", name=f"/llmserving/{name}/vpc-flow-logs",
                                            retention_in_days=args.flow_log_retention_days, tags=tags({}), opts=child)
        account = (pulumi.Output.from_input(args.account_id) if args.account_id
                   else aws.get_caller_identity_output(opts=pulumi.InvokeOptions(parent=self)).account_id)
        role = aws.iam.Role(f"{name}-flow-logs", name=f"{name}-flow-logs"[:64], assume_role_policy=account.apply(
            lambda acct: json.dumps(flow_logs_trust(args.region, acct))), tags=tags({}), opts=child)
        aws.iam.RolePolicy(f"{name}-flow-logs", role=role.id, policy=log_group.arn.apply(lambda arn: pulumi.Output.json_dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Resource": [arn, f"{arn}:*"],
                           "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]}]})),
            opts=child)
        aws.ec2.FlowLog(f"{name}-flow-logs", vpc_id=vpc.id, traffic_type="ALL", log_destination=log_group.arn,
                        iam_role_arn=role.arn, tags=tags({}), opts=child)

        self.vpc_id = vpc.id
        self.vpc_cidr = args.vpc_cidr
        self.zones = list(args.zones)
        self.private_subnet_ids = [s.id for s in private_subnets]
        self.public_subnet_ids = [s.id for s in public_subnets]
        self.register_outputs({
            "vpcId": self.vpc_id,
            "privateSubnetIds": self.private_subnet_ids,
            "publicSubnetIds": self.public_subnet_ids,
        })
