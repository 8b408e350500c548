"""lstmkit.models (in progress)."""
