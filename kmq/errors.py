"""The exceptions and the warning kmq raises.

KmqError is the base of everything kmq raises on bad input; FormatError means a .kmq file (or bytes) is
malformed; ChecksumError is the FormatError for a CRC mismatch.
"""


class KmqError(Exception):
    """Bad input, a failed read or write: anything the user can fix. Its message says what and where."""


class FormatError(KmqError):
    """A .kmq file or byte string is malformed (truncated, forged, unknown version or codec, ...)."""


class ChecksumError(FormatError):
    """The CRC-32 stored in a .kmq file does not match its bytes."""


class KmqWarning(UserWarning):
    """Degenerate but usable input, e.g. fewer distinct colours than K."""
