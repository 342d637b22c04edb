"""Errors a user can act on. The command line prints them without a traceback."""


class EMError(Exception):
    """Base class: the message says what is wrong and where (file:line, config key)."""


class ConfigError(EMError):
    """A config value is missing, unknown or of the wrong type."""


class DataError(EMError):
    """An input file (JSONL, YAML, CSV) is malformed."""


class AssetError(EMError):
    """An external file is missing, or its size or sha256 is not the registered one."""


class JudgeError(EMError):
    """The judge could not be reached or answered something unusable."""
