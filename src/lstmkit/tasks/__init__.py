"""lstmkit.tasks (in progress)."""
