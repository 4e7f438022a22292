"""The one error the analysis helpers raise of their own."""

from amigo_lab.errors import AmigoError


class AnalysisError(AmigoError, ValueError):
    """The input cannot be analysed: not a frame-log DataFrame, a missing column, bad audio or options.

    It is also a :class:`ValueError`, since it always means a bad argument; the message says what to pass.
    """
