"""The error the speech engines raise."""

from amigo_lab.errors import AmigoError


class SpeechError(AmigoError, RuntimeError):
    """A speech engine (VAD, recognizer or synthesizer) could not run on the given input or settings."""
