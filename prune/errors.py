"""The error family of prune/: one exception, raised with the module, node or argument named."""


class PruneError(Exception):
    """A model, option or budget that prune/ cannot handle; the message says what and where."""
