"""Errors that name what a user got wrong, so the CLI can print one readable line for them."""


class RgbxsegError(Exception):
    """Base class of every user-facing error of rgbxseg (the CLI prints it without a traceback)."""


class DataError(RgbxsegError, ValueError):
    """A dataset file or array is missing, unreadable or inconsistent. The message names the file."""


class ConfigError(RgbxsegError, ValueError):
    """A configuration is invalid (unknown key, wrong type, impossible value)."""
