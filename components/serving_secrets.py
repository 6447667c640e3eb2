"""Serving secrets: the HF token and the vLLM API key in Secrets Manager.

The values come from Pulumi secret config (encrypted in state); ECS injects
them into containers by ARN (`secrets[].valueFrom`), so they never appear in
a task definition, an environment block or a command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError

ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SECRET_PATH = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,400}$")


@dataclass(frozen=True)
class ServingSecretsArgs:
    # Path prefix of the secret names, e.g. "llmserving/prod".
    path: str
    # Env var name the container sees -> secret value (a Pulumi secret Output).
    values: Mapping[str, pulumi.Input[str]]
    recovery_window_days: int = 7
    tags: dict[str, str] = field(default_factory=dict)


def validate_serving_secrets_args(args: ServingSecretsArgs) -> None:
    problems = []
    if not SECRET_PATH.match(args.path):
        problems.append(f"path: got {args.path!r}; Secrets Manager names use letters, digits and /_+=.@-")
    for k in args.values:
        if not ENV_NAME.match(k):
            problems.append(f"values: got {k!r}; keys are environment variable names (UPPER_SNAKE_CASE)")
    if not (args.recovery_window_days == 0 or 7 <= args.recovery_window_days <= 30):
        problems.append(f"recovery_window_days: got {args.recovery_window_days}; Secrets Manager allows 0 or 7-30")
    if problems:
        raise ArgsError("ServingSecrets", problems)


class ServingSecrets(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServingSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        validate_serving_secrets_args(args)
        super().__init__("llmserving:serving_secrets:ServingSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.arns: dict[str, pulumi.Output[str]] = {}
        for env, value in sorted(args.values.items()):
            slug = env.lower().replace("_", "-")
            secret = aws.secretsmanager.Secret(f"{name}-{slug}", name=f"{args.path}/{slug}",
                                               recovery_window_in_days=args.recovery_window_days,
                                               tags=dict(args.tags), opts=child)
            aws.secretsmanager.SecretVersion(f"{name}-{slug}", secret_id=secret.id,
                                             secret_string=pulumi.Output.secret(value), opts=child)
            self.arns[env] = secret.arn
        self.register_outputs({"arns": self.arns})
