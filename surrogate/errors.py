"""Errors the surrogate raises for bad input, kept apart so the CLI can map them to exit code 2."""


class SurrogateError(Exception):
    """Base of every surrogate error that is the user's input, not a bug: the CLI prints it in one line."""


class InvalidInput(SurrogateError):
    """A data file, column, option or value that cannot be used (names the offending field)."""


class ModelLoadError(SurrogateError):
    """A model directory that is missing, damaged, or written by an incompatible labloop version."""
