"""The one exception type users see: its message is printed as a single line by the CLI."""


class RtresnetError(Exception):
    """Bad input or an unusable environment; the message says what is wrong and what to do."""
