"""Entry point the Pulumi CLI runs (`main: infra/` in Pulumi.yaml)."""

from infra.stack import main

main()
