"""One exception type for every user-facing failure: the CLI prints its message on one line and exits 1."""


class SnError(Exception):
    """A problem with the user's input or environment, stated so that they can fix it."""
