"""The error family of export/: the CLI turns each into one line and exit code 2."""


class ExportError(Exception):
    """A user-facing export failure; the message names the model, file, layer or target and the problem."""


class ParityFailed(ExportError):
    """An artifact (or the ONNX graph) ran and disagreed with its reference beyond the parity gate's tolerance."""

    def __init__(self, message: str, action: int = -1, row: int = -1) -> None:
        super().__init__(message)
        self.action, self.row = action, row  # where the worst error was found (-1: output shapes differ)
