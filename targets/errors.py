"""The error family of targets/: the CLI turns each into one line and exit code 2."""


class TargetError(Exception):
    """A user-facing failure about a target: unknown name, bad definition, missing tool, failed run."""
