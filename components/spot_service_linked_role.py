"""The EC2 Spot service-linked role (AWSServiceRoleForEC2Spot) of the account.

EC2 creates it on an account's first Spot request only when the caller may
create it; Karpenter's controller and the EKS/Auto Scaling service roles may
not, so on an account that never used Spot every Spot launch fails with
`AuthFailure.ServiceLinkedRoleCreationNotPermitted` (Karpenter troubleshooting
guide). Creating it here fixes that.

The role is one per ACCOUNT, not per stack: creating it when it already exists
fails (`InvalidInput: Service role name AWSServiceRoleForEC2Spot has been taken
in this account`; the Terraform resource under pulumi-aws calls
CreateServiceLinkedRole and does not adopt an existing role:
hashicorp/terraform-provider-aws internal/service/iam/service_linked_role.go).
So exactly one stack per account creates it; the others set
`llmserving:spotServiceLinkedRole: existing`. It is kept on `pulumi destroy`
(retain_on_delete): other stacks and Spot capacity in the account rely on it.
Untagged: it is the account's, not this stack's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError

SPOT_SERVICE = "spot.amazonaws.com"
ROLE_NAME = "AWSServiceRoleForEC2Spot"


@dataclass(frozen=True)
class SpotServiceLinkedRoleArgs:
    aws_service_name: str = SPOT_SERVICE


def validate_spot_service_linked_role_args(args: SpotServiceLinkedRoleArgs) -> None:
    if args.aws_service_name != SPOT_SERVICE:
        raise ArgsError("SpotServiceLinkedRole", [
            f"aws_service_name: got {args.aws_service_name!r}; this component creates the {SPOT_SERVICE} role only"])


class SpotServiceLinkedRole(pulumi.ComponentResource):
    role: aws.iam.ServiceLinkedRole

    def __init__(self, name: str, args: SpotServiceLinkedRoleArgs, opts: Optional[pulumi.ResourceOptions] = None):
        validate_spot_service_linked_role_args(args)
        super().__init__("llmserving:iam:SpotServiceLinkedRole", name, {}, opts)
        self.role = aws.iam.ServiceLinkedRole(
            name, aws_service_name=args.aws_service_name,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
        self.register_outputs({"arn": self.role.arn})
