"""The engine's own exception types.

Every error a user can cause (a bad file, a mismatched TR count, a missing model)
raises one of these with a message saying what was expected and what was found.
The CLI prints the message without a traceback; the GUI shows it in a dialog.
"""


class AlignScopeError(Exception):
    """Base class of every error a user can cause."""


class DataError(AlignScopeError):
    """A file or folder does not hold what was expected (format, shape, NaNs...)."""


class MismatchError(DataError):
    """Two things that must agree do not (TR counts, durations, vertex counts)."""


class ModelNotFoundError(AlignScopeError):
    """A model was asked for that is neither in a local folder nor in the offline cache."""


class ConfigError(AlignScopeError):
    """An option or setting has a value outside what is supported."""


class SchemaError(AlignScopeError):
    """A project or result file has a schema this version cannot read."""


class JobCancelled(AlignScopeError):
    """A job stopped because its cancel token was set."""


def expected_found(what: str, expected, found) -> str:
    """Format the standard "expected X, found Y" message."""
    return f"{what}: expected {expected}, found {found}"
