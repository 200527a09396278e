"""User-facing errors.

Anything a user can cause (bad data, bad config, a missing file) raises a subclass of
`PosttrainError`; the CLI prints its one-line message and exits 2 without a traceback.
"""

from __future__ import annotations


class PosttrainError(Exception):
    """An error the user can fix; `str(err)` is the whole message."""


class ConfigError(PosttrainError):
    """A config file, preset or `--set` override is invalid."""


class DataError(PosttrainError):
    """A data file is malformed. The message names file, line (1-based) and field."""

    def __init__(self, path: str, line: int | None, field: str | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.detail = message
        where = self.path if line is None else f"{self.path}:{line}"
        what = f'field "{field}" ' if field else ""
        super().__init__(f"{where}: {what}{message}")


class CheckpointError(PosttrainError):
    """A checkpoint or adapter directory is missing, half-written or incompatible."""


class DivergedError(PosttrainError):
    """Training produced a NaN or inf loss or gradient; the offending update was not applied."""
