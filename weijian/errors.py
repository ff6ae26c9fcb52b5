"""Errors of the command line and pipeline package."""


class WeijianError(Exception):
    """Root error of the ``weijian`` package (configuration, pipeline chaining)."""


class ConfigurationError(WeijianError, ValueError):
    """The settings are invalid; the message names the variable or file key to change."""
