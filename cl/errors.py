"""User-facing errors.

Every error a user can cause (bad argument, missing data, unreadable image, bad checkpoint)
is raised as a subclass of :class:`UserError`. The command line turns these into one line on
stderr and exit code 2; the app shows the message. Anything else is a bug.
"""


class UserError(Exception):
    """An error caused by input, not by a bug. ``str(err)`` is a complete, one-line message."""


class DataUnavailableError(UserError):
    """A data set's files are missing and could not be downloaded."""


class CheckpointError(UserError):
    """A checkpoint file is missing, corrupt, foreign or does not fit the data."""


class ImageInputError(UserError):
    """An image file or upload cannot be used."""


class ConfigError(UserError):
    """An option value is invalid (unknown name, negative size, ...)."""
