"""lstmkit.explain (in progress)."""
