"""lstmkit.train (in progress)."""
