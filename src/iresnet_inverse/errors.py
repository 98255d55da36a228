"""What the user can fix, and what they cannot: the command line reports a ``UserError`` in one
line that says what to change; every other exception is a bug of ours and keeps its traceback.

Each class also derives from the built-in error it refines, so callers that catch ``ValueError``
or ``RuntimeError`` keep working.
"""


class UserError(Exception):
    """A problem with what the user gave: the message names the field, file or argument."""


class ConfigError(UserError, ValueError):
    """The config (or a value resolved from it, e.g. a job) is invalid; the message names the
    field."""


class InputDataError(UserError, ValueError):
    """An input the user passed (an image, a folder, a dataset, a command-line argument) cannot
    be used as given."""


class ArtifactError(UserError, RuntimeError):
    """A NetCDF artifact or checkpoint is missing or unreadable: the message names the file and
    the rule that makes it."""


class ArchiveError(UserError, ValueError):
    """An archive does not match its manifest, or is not one of ours."""


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (a non-finite loss, a divergence); the message names the cell, the
    step and the setting to change."""
