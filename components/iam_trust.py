"""Trust policies for service roles, with the confused-deputy conditions each service actually sends.

A condition on a key the service does not send makes AssumeRole fail, so
each function cites where the service documents its keys.
"""

from __future__ import annotations


def _doc(statements: list[dict]) -> dict:
    return {"Version": "2012-10-17", "Statement": statements}


def pod_identity_trust(cluster_arn: str, namespace: str, service_account: str) -> dict:
    """A role assumed through EKS Pod Identity by one service account of one cluster.

    Pod Identity sends the session tags eks-cluster-arn, kubernetes-namespace
    and kubernetes-service-account as request tags (awsdocs/amazon-eks-user-guide,
    latest/ug/manage-access/aws-access/pod-id-role.adoc, "Setting Conditions";
    pod-id-abac.adoc lists the tags). Conditioning on them keeps any other
    cluster or service account in the account from using the role. Pod
    Identity documents no aws:SourceArn / aws:SourceAccount, so they are not
    required (a missing key would fail AssumeRole).
    """
    return _doc([{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
                  "Action": ["sts:AssumeRole", "sts:TagSession"],
                  "Condition": {"StringEquals": {"aws:RequestTag/eks-cluster-arn": cluster_arn,
                                                 "aws:RequestTag/kubernetes-namespace": namespace,
                                                 "aws:RequestTag/kubernetes-service-account": service_account}}}])


def ec2_trust() -> dict:
    """Node roles: EC2 documents no source keys for instance-profile role assumption, so none are added."""
    return _doc([{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}])


def flow_logs_trust(region: str, account_id: str, partition: str = "aws") -> dict:
    """VPC Flow Logs publishing to CloudWatch Logs: the VPC user guide ("IAM role for publishing
    flow logs to CloudWatch Logs") recommends aws:SourceAccount (the flow log's owner) and
    aws:SourceArn (the flow log ARN, wildcard id before it exists)."""
    return _doc([{"Effect": "Allow", "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                  "Action": "sts:AssumeRole",
                  "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                                "ArnLike": {"aws:SourceArn": f"arn:{partition}:ec2:{region}:{account_id}:vpc-flow-log/*"}}}])
