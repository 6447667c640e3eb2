"""Serving secrets: the HF token and the vLLM API key as SSM Parameter Store SecureStrings.

The values come from Pulumi secret config (encrypted in state); ECS injects
them into containers (`secrets[].valueFrom`), so they never appear in a task
definition, an environment block or a command line.

Why Parameter Store and not Secrets Manager: ECS takes the full ARN of a
Secrets Manager secret, which ends in a random suffix AWS picks at creation
(`...:secret:<name>-AbCdEf`), so on a first deploy the ARN, and with it the
whole task definition, is unknown to `pulumi preview` and to every policy
that reads the container definitions. A parameter's ARN is its name under
`arn:<partition>:ssm:<region>:<account>:parameter`, known before anything
exists (botocore `ecs` model, Secret.valueFrom: "the full ARN of the parameter
in the SSM Parameter Store"; a parameter in the task's Region may also be
named). `arns` are built from the parameter's `name` output, so they are
known at preview yet still make the task definition wait for the parameters.

A SecureString under the AWS-managed key (alias/aws/ssm) needs only
`ssm:GetParameters` on the execution role; `kms:Decrypt` is needed only for a
customer managed key (Amazon ECS Developer Guide, "Required IAM permissions
for Amazon ECS secrets", Systems Manager).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# SSM parameter names: letters, digits and . - _ /; a hierarchy starts with '/' (SSM PutParameter Name);
# no segment may start with aws or ssm.
PARAMETER_PATH = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
ACCOUNT_ID = re.compile(r"^[0-9]{12}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
# PutParameter: a Standard parameter holds up to 4 KB and its full name up to 1011 characters.
MAX_NAME = 1011


@dataclass(frozen=True)
class ServingSecretsArgs:
    # Path of the parameters without the leading '/', e.g. "llmserving/prod".
    path: str
    # Env var name the container sees -> secret value (a Pulumi secret Output).
    values: Mapping[str, pulumi.Input[str]]
    # Where the parameters live; found with the caller-identity/region data sources when not given
    # (invokes answer in a preview, so the ARNs stay known).
    region: Optional[str] = None
    account_id: Optional[str] = None
    partition: str = "aws"
    # Not applied: Standard parameters cost nothing to allocate, and the cost-allocation rule
    # (policies/rules/cost.py TAGGABLE_TYPES) does not list aws:ssm/parameter:Parameter yet.
    tags: dict[str, str] = field(default_factory=dict)


def parameter_name(path: str, env: str) -> str:
    return f"/{path}/{env.lower().replace('_', '-')}"


def parameter_arn(partition: str, region: str, account_id: str, name: str) -> str:
    # A hierarchical name starts with '/', which the ARN does not repeat (arn:aws:ssm:r:a:parameter/x/y).
    return f"arn:{partition}:ssm:{region}:{account_id}:parameter/{name.lstrip('/')}"


def validate_serving_secrets_args(args: ServingSecretsArgs) -> None:
    problems = []
    if not PARAMETER_PATH.match(args.path) or any(s.lower().startswith(("aws", "ssm")) for s in args.path.split("/")):
        problems.append(f"path: got {args.path!r}; SSM parameter paths use letters, digits and ._-/ segments, none "
                        f"starting with aws or ssm, and no leading '/'")
    for k in args.values:
        if not ENV_NAME.match(k):
            problems.append(f"values: got {k!r}; keys are environment variable names (UPPER_SNAKE_CASE)")
        elif len(parameter_name(args.path, k)) > MAX_NAME:
            problems.append(f"values: {k!r} makes the parameter name longer than {MAX_NAME} characters")
    if args.region is not None and not REGION.match(args.region):
        problems.append(f"region: got {args.region!r}; an AWS Region such as us-east-1")
    if args.account_id is not None and not ACCOUNT_ID.match(args.account_id):
        problems.append(f"account_id: got {args.account_id!r}; 12 digits")
    if problems:
        raise ArgsError("ServingSecrets", problems)


class ServingSecrets(pulumi.ComponentResource):
    """One SecureString parameter per value; `arns` (env -> parameter ARN) are what ECS `valueFrom` and the
    execution role's `ssm:GetParameters` take."""

    def __init__(self, name: str, args: ServingSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        validate_serving_secrets_args(args)
        super().__init__("llmserving:serving_secrets:ServingSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        region = args.region or aws.get_region(opts=pulumi.InvokeOptions(parent=self)).region
        account = args.account_id or aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=self)).account_id
        self.arns: dict[str, pulumi.Output[str]] = {}
        self.names: dict[str, pulumi.Output[str]] = {}
        for env, value in sorted(args.values.items()):
            slug = env.lower().replace("_", "-")
            param = aws.ssm.Parameter(f"{name}-{slug}", name=parameter_name(args.path, env), type="SecureString",
                                      value=pulumi.Output.secret(value), tier="Standard",
                                      description=f"{env} for the serving containers (ECS secrets)",
                                      opts=child)
            self.names[env] = param.name
            self.arns[env] = param.name.apply(lambda n: parameter_arn(args.partition, region, account, n))
        self.register_outputs({"arns": self.arns})
