"""Errors that `zoo` raises for bad input. The `zoo` command prints them without a traceback."""


class ZooError(Exception):
    """Base class: a problem with the user's input, explained in the message."""


class UnknownModelError(ZooError, KeyError):
    """A model id that is not registered; the message lists the closest ids."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnknownTaskError(ZooError, KeyError):
    """A task kind that no task class registers; the message lists the known kinds."""

    def __str__(self) -> str:
        return str(self.args[0])


class DuplicateModelError(ZooError):
    """Two factories registered under the same id."""


class CheckpointError(ZooError):
    """A checkpoint that cannot be read, is not what it claims to be, or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A file that asks for more than data: a pickle that would patch a class or function, or a TorchScript
    archive (which carries code). Refused; nothing from it has run. (Unknown classes and calls in a pickle are
    not refused: they are read as inert ``zoo.safe_pickle.PickledObject`` stand-ins.)"""


class HashMismatchError(CheckpointError):
    """A downloaded or local file whose sha256 differs from the expected one."""


class CheckpointMismatchError(CheckpointError):
    """A state dict whose keys or shapes do not fit the model."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str], mismatched: list[str]):
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


class DataError(ZooError):
    """A dataset that is missing, empty or malformed; the message names the file."""


class InputShapeError(ZooError, ValueError):
    """A tensor whose shape the model cannot take."""


class NonFiniteLossError(ZooError, FloatingPointError):
    """The training loss became NaN or infinite."""


class RunStoppedError(ZooError):
    """The run was stopped by a signal (Ctrl-C, SIGTERM) at a clean point; its state is saved and it can be
    resumed. The `zoo` command exits with 128 + the signal number, as a shell does for a signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class CheckpointWriteError(ZooError):
    """A checkpoint could not be written (disk full, folder not writable); the last good one is kept."""
