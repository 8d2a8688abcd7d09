"""Start-up errors an operator fixes in the configuration or the environment.

The CLI (core/cli.py) turns each into one line on stderr and exit code 2 (a traceback only
at SEMON_LOG_LEVEL=DEBUG): the line names the setting or the service and what to do.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting has a value semon cannot use; ``setting`` is the ``SEMON_*`` variable (or
    command-line option) to fix."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.message = message


class ServiceUnavailable(RuntimeError):
    """A service the command needs at start (database, InfluxDB, broker) did not answer."""

    def __init__(self, service: str, setting: str, detail: str) -> None:
        super().__init__(f"{service} unreachable ({setting}): {detail}")
        self.service = service
        self.setting = setting
