"""Policy modules, one per area: gpu, cost, security, reliability."""
