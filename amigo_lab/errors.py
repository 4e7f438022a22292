"""The root of every error amigo_lab raises.

Every error class in the lab derives from :class:`AmigoError`, so one ``except AmigoError`` catches them
all. The tree (each subclass lives next to the code that raises it)::

    AmigoError
    ├── ProtocolError                 amigo_lab.protocol  (a frame or state-machine rule was broken)
    │   ├── FrameError                  a text is not a valid frame; names the field and what was wrong
    │   ├── LocalProtocolError          we tried to send a frame the conversation state forbids
    │   └── RemoteProtocolError         the peer sent a frame the conversation state forbids
    ├── AudioError                    amigo_lab.audio     (bad audio input: file, format, length)
    ├── SpeechError                   amigo_lab.speech    (speech engines could not run)
    ├── EmulatorError                 amigo_lab.emulator  (the embedded emulator cannot start or serve)
    │   ├── ServiceError                a service definition in data/services is invalid
    │   └── Refusal                     a connection is refused with a close code (internal to the server)
    ├── SessionError                  amigo_lab.session   (connecting or talking failed)
    │   ├── ConnectionClosedError       the socket closed; carries close code, reason and a hint
    │   └── TurnError                   the server answered a turn with ``server.error``
    ├── FrameLogError                 amigo_lab.framelog  (a recorded session cannot be written or read)
    └── AnalysisError                 amigo_lab.analysis  (a frame log or audio cannot be analysed as asked)

Errors from libraries (websockets, soundfile, ...) are translated at the boundary with ``raise ... from exc``
so the original stays attached as ``__cause__``.
"""


class AmigoError(Exception):
    """Base class of every amigo_lab error; catch it to catch them all."""
