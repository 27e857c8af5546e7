"""The error family of the application layer; the CLI turns each into one line and exit code 2."""


class ToolsError(Exception):
    """A user-facing failure in tools/ (bad controller file, bad option value, failed run)."""


class ControllerError(ToolsError):
    """A controller file that cannot be loaded; the message names the file and the problem."""
