"""User-facing error type: raised for bad input; the CLI prints it as one line and exits with status 2."""


class UserError(ValueError):
    """Bad input from the user (a file, a column, a flag). Its message says what was wrong and what was expected."""
