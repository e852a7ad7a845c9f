"""The one exception type for user mistakes: the CLI prints its message on one line and exits 1."""


class FkdError(Exception):
    """A problem with the user's input (file, key, value) that the message explains."""
