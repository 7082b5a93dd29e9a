"""The errors a user can fix. The apps (study.cli) print them as one line and exit with 2."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix (config, data, storage, study name); printed as one line."""


class StudyStopped(UserError):
    """A sweep ran and then stopped (too many failures); unlike other user errors, what it wrote
    stays."""


class ConfigError(UserError):
    """A config value is invalid; the message is one line naming the key and what is allowed."""
