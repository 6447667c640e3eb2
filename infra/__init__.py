"""The Pulumi program (infra/__main__.py), its config, catalog, planner and offline preview."""
