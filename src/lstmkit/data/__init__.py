"""lstmkit.data (in progress)."""
