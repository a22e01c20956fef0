"""The library's exceptions: each names the offending value and what was expected."""


class RetentiveError(Exception):
    """Base class of every error retentive raises on purpose."""


class StateError(RetentiveError):
    """A state folder is missing, unreadable, tampered with, or of an unknown format."""


class MemoryShapeError(RetentiveError, ValueError):
    """A sample does not fit the memory: other keys, shapes or dtypes than those stored."""


class DataError(RetentiveError, ValueError):
    """A training chunk is unusable: empty, mislabelled, or incompatible with the model."""


class NonFiniteLossError(RetentiveError, FloatingPointError):
    """Training produced a NaN or infinite loss; the update stops and writes nothing."""


class MemoryBudgetError(RetentiveError, MemoryError):
    """The replay memory needs more bytes than its device has available; nothing was changed."""


class StateLockedError(StateError):
    """Another live update holds the lock on the output folder; this one wrote nothing."""


class ReplicaMismatchError(RetentiveError, RuntimeError):
    """Under data parallelism the ranks' models, component states or memories differ."""


class StateConflictError(StateError):
    """The target changed since this writer read it (another update, a rollback or a publish
    committed in between); this writer committed nothing, and the message names both versions
    and where the new state was kept, if anywhere."""


class RegistryError(RetentiveError):
    """The model registry cannot be used: its tracking server is unreachable, it refused a request,
    or its optional extra (``retentive[mlflow]``) is not installed. Raised before any training when
    the registry is checked up front."""


class SampleNotFoundError(RetentiveError, KeyError):
    """A deletion named sample ids (or a source, or a predicate) the memory does not hold; nothing
    was removed. ``missing`` lists the ids not found."""

    def __init__(self, message: str, missing: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])
