"""The error family of export/: the CLI turns each into one line and exit code 2."""


class ExportError(Exception):
    """A user-facing export failure; the message names the model, file, layer or target and the problem."""
