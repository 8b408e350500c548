"""lstmkit.layers (in progress)."""
