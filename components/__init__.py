"""Reusable ComponentResources. Each knows nothing of stacks or tiers."""
