"""Errors that stop a stage with a one-line message naming the culprit."""

from __future__ import annotations


class UMRError(Exception):
    """A user-facing error: bad config, bad input file, missing model.

    The message is one line and names the config key, file (and line) or model
    directory at fault, so the log of a failed job says what to fix.
    """


class ConfigError(UMRError):
    """An invalid configuration value; the message starts with the key."""


class InputFileError(UMRError):
    """A malformed input file; the message starts with `path:line:`."""

    def __init__(self, path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
