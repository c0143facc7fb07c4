"""Errors a user can fix: the CLIs print them as one line and exit with status 2."""


class FairrecError(Exception):
    """Bad input (file, field, argument, config). The message names what, where and what is expected."""


class DataError(FairrecError):
    """A dataset file is missing, malformed, or yields nothing usable."""


class ConfigError(FairrecError):
    """A config key, value or combination is invalid."""
