"""Errors raised for bad input data: each message names the file and the fix."""


class DataError(ValueError):
    """A dataset file or directory is missing or malformed."""


class AudioError(DataError):
    """An audio file cannot be read (missing, corrupt, empty)."""
