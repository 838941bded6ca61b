"""The exception types users see: the message is printed as a single line by the CLI."""


class RtresnetError(Exception):
    """Bad input or an unusable environment; the message says what is wrong and what to do."""

    exit_code = 1


class UsageError(RtresnetError):
    """A name or option the command does not know (an unknown architecture or backend): exit status 2, as for
    click's own usage errors."""

    exit_code = 2
