"""The one error class of :mod:`amigo_lab.audio`."""

from amigo_lab.errors import AmigoError


class AudioError(AmigoError, ValueError):
    """Bad audio input: a missing or unreadable file, an unknown format, a wrong length or dtype.

    It is also a :class:`ValueError`, so code that already guards against bad values catches it.
    When a library error caused it, that error is attached as ``__cause__``.
    """
