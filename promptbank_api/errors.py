"""Domain errors, in one place. The coordinator maps each class to one gRPC status code.

Messages are shown to clients verbatim, so they name the bad value and never leak internals.
"""


class PromptBankError(Exception):
    """Base of all domain errors."""


class InvalidArgument(PromptBankError):
    """The request is malformed or names a bad value."""


class NotFound(PromptBankError):
    """A named resource does not exist."""


class AlreadyExists(PromptBankError):
    """A resource with that name exists, or a request_id was reused with a different payload."""


class FailedPrecondition(PromptBankError):
    """The system is not in a state where the request can run (e.g. a prompt on the wrong backbone)."""


class PermissionDenied(PromptBankError):
    """The caller may not do this here (e.g. read a server file outside the configured data roots)."""


class Aborted(PromptBankError):
    """A concurrent change to the same resource won (e.g. two coordinators creating one name); retry."""


class ResourceExhausted(PromptBankError):
    """A size or rate limit was hit."""


class Unavailable(PromptBankError):
    """A backend (a replica) is not available right now; the client may retry."""
