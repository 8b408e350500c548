"""The ``lstmkit`` command line: parsing only; every command calls into ``lstmkit.tasks``."""
