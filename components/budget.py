"""Stack budget: a monthly AWS cost budget with e-mail alerts at configured thresholds.

The budget counts the cost of resources tagged `stack=<stack>` (filter
`TagKeyValue user:stack$<stack>`); the `stack` tag must be activated once per
account as a cost-allocation tag (Billing console or `aws ce
update-cost-allocation-tags-status`), which is account-wide and therefore not
managed by one stack. Each threshold alerts on ACTUAL spend; the forecast
alert fires when the month is forecast to exceed the limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import pulumi
import pulumi_aws as aws

from components.errors import ArgsError

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
TAG_KEY = re.compile(r"^[A-Za-z0-9_.:/=+@-]{1,128}$")
# AWS Budgets: at most 5 notifications per budget, 10 e-mail subscribers each.
MAX_NOTIFICATIONS = 5
MAX_EMAILS = 10


@dataclass(frozen=True)
class StackBudgetArgs:
    budget_name: str
    monthly_limit_usd: float
    alert_thresholds_percent: tuple[int, ...]
    notify_emails: tuple[str, ...]
    # Cost-allocation tag the budget filters on (key, value); None: the whole account.
    cost_filter_tag: Optional[tuple[str, str]] = None
    forecast_alert: bool = True
    tags: dict[str, str] = field(default_factory=dict)


def validate_stack_budget_args(args: StackBudgetArgs) -> None:
    problems = []
    if not re.match(r"^[^:\\]{1,100}$", args.budget_name):
        problems.append(f"budget_name: got {args.budget_name!r}; 1-100 characters without ':' or '\\'")
    if not args.monthly_limit_usd > 0:
        problems.append(f"monthly_limit_usd: got {args.monthly_limit_usd}; must be above 0")
    for t in args.alert_thresholds_percent:
        if not 1 <= t <= 500:
            problems.append(f"alert_thresholds_percent: got {t}; allowed 1-500")
    count = len(set(args.alert_thresholds_percent)) + (1 if args.forecast_alert else 0)
    if count > MAX_NOTIFICATIONS:
        problems.append(f"alert_thresholds_percent: got {len(set(args.alert_thresholds_percent))} thresholds"
                        f"{' plus the forecast alert' if args.forecast_alert else ''}; AWS Budgets allows "
                        f"{MAX_NOTIFICATIONS} notifications per budget")
    if count and not args.notify_emails:
        problems.append("notify_emails: got none; alerts need at least one address")
    if len(args.notify_emails) > MAX_EMAILS:
        problems.append(f"notify_emails: got {len(args.notify_emails)}; AWS Budgets allows {MAX_EMAILS} per alert")
    for e in args.notify_emails:
        if not EMAIL.match(e):
            problems.append(f"notify_emails: got {e!r}; not an e-mail address")
    if args.cost_filter_tag is not None:
        key, value = args.cost_filter_tag
        if not TAG_KEY.match(key) or not value:
            problems.append(f"cost_filter_tag: got {args.cost_filter_tag!r}; needs a tag key and a non-empty value")
    if problems:
        raise ArgsError("StackBudget", problems)


def notifications(args: StackBudgetArgs) -> list[dict]:
    out = [{"comparison_operator": "GREATER_THAN", "notification_type": "ACTUAL", "threshold": float(t),
            "threshold_type": "PERCENTAGE", "subscriber_email_addresses": list(args.notify_emails)}
           for t in sorted(set(args.alert_thresholds_percent))]
    if args.forecast_alert:
        out.append({"comparison_operator": "GREATER_THAN", "notification_type": "FORECASTED", "threshold": 100.0,
                    "threshold_type": "PERCENTAGE", "subscriber_email_addresses": list(args.notify_emails)})
    return out


class StackBudget(pulumi.ComponentResource):
    def __init__(self, name: str, args: StackBudgetArgs, opts: pulumi.ResourceOptions | None = None):
        validate_stack_budget_args(args)
        super().__init__("llmserving:budget:StackBudget", name, None, opts)
        filters = ([{"name": "TagKeyValue", "values": [f"user:{args.cost_filter_tag[0]}${args.cost_filter_tag[1]}"]}]
                   if args.cost_filter_tag else None)
        budget = aws.budgets.Budget(
            f"{name}-monthly", name=args.budget_name, budget_type="COST", time_unit="MONTHLY",
            limit_amount=f"{args.monthly_limit_usd:.2f}", limit_unit="USD", cost_filters=filters,
            notifications=notifications(args), tags=dict(args.tags), opts=pulumi.ResourceOptions(parent=self))
        self.budget_name = budget.name
        self.register_outputs({"budgetName": self.budget_name})
