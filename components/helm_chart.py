"""A pinned Helm chart as component args, its checks and its release (no component here).

Shared by the serving components (components/serving_foundation.py,
components/observability.py): a chart is installed as a plain
`kubernetes.helm.v3.Release` (a custom resource under the mock engine, so
previews and policies see it), always with an exact chart version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class ChartRelease:
    """One Helm release: the release name, the pinned chart and where it goes."""

    name: str
    chart: str
    version: str
    namespace: str
    repository: str = ""  # empty for OCI charts (the chart is the full oci:// reference)
    values: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: int = 900


def chart_problems(what: str, c: ChartRelease) -> list[str]:
    """Problems of one chart arg, each naming `what` (the arg), the bad value and what is allowed."""
    p: list[str] = []
    if not DNS_LABEL.match(c.name):
        p.append(f"{what}.name: got {c.name!r}; a release name is a DNS label")
    if not c.chart:
        p.append(f"{what}.chart: got {c.chart!r}; name the chart (or its oci:// reference)")
    if not EXACT_VERSION.match(c.version or ""):
        p.append(f"{what}.version: got {c.version!r}; pin an exact chart version such as 2.20.2 (no ranges, no latest)")
    if not DNS_LABEL.match(c.namespace):
        p.append(f"{what}.namespace: got {c.namespace!r}; must be a DNS label")
    if not c.repository and not c.chart.startswith("oci://"):
        p.append(f"{what}.repository: got ''; give the chart repository URL or an oci:// chart reference")
    if c.timeout_seconds < 60:
        p.append(f"{what}.timeout_seconds: got {c.timeout_seconds}; allow at least 60 s for a release")
    return p


def helm_release(resource_name: str, c: ChartRelease, opts: pulumi.ResourceOptions) -> k8s.helm.v3.Release:
    return k8s.helm.v3.Release(
        resource_name, name=c.name, chart=c.chart, version=c.version, namespace=c.namespace, create_namespace=True,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=c.repository) if c.repository else None,
        values=c.values, atomic=True, timeout=c.timeout_seconds, opts=opts)
