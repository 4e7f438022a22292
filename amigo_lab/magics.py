"""IPython magics: ``%amigo`` and ``%%amigo``, a thin layer over the session and the widgets.

Load with ``%load_ext amigo_lab``, then ``%amigo connect`` and talk; ``%amigo?`` lists every command.
The connected session is also put in the notebook as ``amigo_session`` for everything the magics do not
cover (``amigo_session.frames``, ``amigo_session.send_audio(...)``).
"""

from __future__ import annotations

import argparse
import fnmatch
import shlex
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = ["AmigoMagics", "load_ipython_extension", "unload_ipython_extension"]

SESSION_VARIABLE = "amigo_session"
"""Name under which ``%amigo connect`` puts the session into the notebook's namespace."""

LOG_COLUMNS = ("seq", "t", "direction", "type", "message_id", "sequence_number", "stop", "text", "audio_ms",
               "vad_ms", "vad_mode_on", "played_ms", "http_error_code", "close_code")
"""Columns ``%amigo log`` shows; the full frame log is ``amigo_session.frames``."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports mistakes as IPython usage errors instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\n{self.format_usage().strip()}\nSee %amigo? for every command.")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        # Only reached after --help printed its text; stop quietly.
        raise _HelpShown()


class _HelpShown(Exception):
    """--help was asked for and printed."""


def _build_parser() -> _Parser:
    parser = _Parser(prog="%amigo", add_help=False, exit_on_error=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    connect = commands.add_parser("connect", help="connect (embedded emulator unless an org and token are given)")
    connect.add_argument("--org", help="organization id (default: $AMIGO_ORG)")
    connect.add_argument("--token", help="JWT (default: $AMIGO_TOKEN)")
    connect.add_argument("--region", help="us, eu, au or ca")
    connect.add_argument("--service", help="service id (24 hex)")
    connect.add_argument("--host", help="API host, overriding the region's")
    connect.add_argument("--text", action="store_true", help="agent answers in text (response_format=text)")
    connect.add_argument("--mp3", action="store_true", help="MP3 audio both ways (audio_format=mp3)")

    send = commands.add_parser("send", help="send an audio file as one user turn")
    send.add_argument("file")
    send.add_argument("--fast", action="store_true", help="send as fast as allowed, not in real time")

    vad = commands.add_parser("vad", help="switch the server's voice activity detection")
    vad.add_argument("switch", choices=("on", "off"))

    mic = commands.add_parser("mic", help="show the session panel with microphone and player")
    mic.add_argument("--vad", action="store_true", help="microphone in VAD mode instead of push-to-talk")

    commands.add_parser("status", help="connection and conversation state")

    log = commands.add_parser("log", help="the frame log as a table")
    log.add_argument("-n", type=int, default=20, help="last N entries (0: all; default 20)")
    log.add_argument("--type", dest="type_pattern", help="only entry types matching this (glob, e.g. 'server.vad-*')")

    save = commands.add_parser("save", help="save the recorded session to a folder")
    save.add_argument("dir")

    commands.add_parser("finish", help="finish the conversation for good")
    commands.add_parser("close", help="close the connection (the conversation can be continued)")
    return parser


#: Session states after which the conversation needs nothing more from the magics.
_ENDED_STATES = ("closed", "failed", "completed")

# say and event take the rest of the line verbatim, so apostrophes and quotes need no escaping.
_TEXT_COMMANDS = ("say", "event")


@magics_class
class AmigoMagics(Magics):
    """The ``%amigo`` line magic and ``%%amigo`` cell magic; one session per shell."""

    def __init__(self, shell: InteractiveShell) -> None:
        super().__init__(shell)
        self.session: Any = None
        self.panel: Any = None
        self._parser = _build_parser()

    @line_cell_magic
    def amigo(self, line: str, cell: str | None = None) -> Any:
        """Talk to an Amigo voice agent (or the embedded emulator) from the notebook.

        Line magic, one command per line::

            %amigo connect [--org ORG --token JWT] [--region R] [--service ID] [--host H] [--text] [--mp3]
                                      connect; without org/token the embedded emulator answers
            %amigo say TEXT           send a user message, print the agent's reply
            %amigo event TEXT         send an external event, print the reply it leads to
            %amigo send FILE [--fast] send an audio file as one user turn
            %amigo vad on|off         switch the server's voice activity detection
            %amigo mic [--vad]        show the panel: microphone, player, live transcript
            %amigo status             connection and conversation state
            %amigo log [-n N] [--type PATTERN]
                                      the frame log as a table (last 20 entries by default)
            %amigo save DIR           save the recorded session (frames, audio, meta) to DIR
            %amigo finish             finish the conversation for good
            %amigo close              close the connection (the conversation can be continued)

        Cell magic: every non-empty line of the cell is a user turn, sent in order; each is printed
        with the agent's reply (lines starting with # are skipped)::

            %%amigo
            what are your opening hours
            and on sunday?

        After ``connect`` the session is also available as ``amigo_session``.
        """
        if cell is not None:
            return self._run_cell(line, cell)
        words = line.split(None, 1)
        if not words:
            raise UsageError("%amigo needs a command, e.g. %amigo connect. See %amigo? for every command.")
        command = words[0]
        if command in _TEXT_COMMANDS:
            text = words[1].strip() if len(words) > 1 else ""
            if not text:
                raise UsageError(f"%amigo {command} needs the text to send, e.g. %amigo {command} hello")
            return self._say(text) if command == "say" else self._event(text)
        try:
            args = self._parser.parse_args(shlex.split(line))
        except _HelpShown:
            return None
        except ValueError as exc:  # unbalanced quotes from shlex
            raise UsageError(f"cannot read the arguments: {exc}") from None
        except argparse.ArgumentError as exc:
            raise UsageError(f"{exc}\nSee %amigo? for every command.") from None
        return getattr(self, f"_cmd_{args.command}")(args)

    # --- commands ----------------------------------------------------------------------------------------

    def _cmd_connect(self, args: argparse.Namespace) -> None:
        from amigo_lab._connect import connect

        if self.session is not None and self.session.state not in _ENDED_STATES:
            # The new session replaces this one, and a user may have only one unfinished conversation per
            # service: end it for good, as connect() does for the embedded emulator.
            self.session.finish()
        self.session = connect(
            args.org, args.token, region=args.region, service_id=args.service, host=args.host,
            response_format="text" if args.text else "voice", audio_format="mp3" if args.mp3 else "pcm")
        self.shell.push({SESSION_VARIABLE: self.session})
        print(f"connected: conversation {self.session.conversation_id}")
        greeting = self.session.greeting
        if greeting is not None:
            print(f"agent: {greeting.result().text}")

    def _say(self, text: str) -> None:
        reply = self._require_session().say(text).result()
        self._print_reply(reply)

    def _event(self, text: str) -> None:
        reply = self._require_session().event(text).result()
        self._print_reply(reply)

    def _cmd_send(self, args: argparse.Namespace) -> None:
        reply = self._require_session().send_audio(args.file, realtime=not args.fast).result()
        print(f"you (heard): {reply.user_text}")
        self._print_reply(reply)

    def _cmd_vad(self, args: argparse.Namespace) -> None:
        self._require_session().vad(args.switch == "on")
        print(f"VAD {args.switch}")

    def _cmd_mic(self, args: argparse.Namespace) -> None:
        from amigo_lab.widgets import SessionPanel

        if self.panel is not None:
            self.panel.close()      # one microphone at a time: the old panel releases it
        self.panel = SessionPanel(self.session, mode="vad" if args.vad else "push-to-talk")
        display(self.panel)

    def _cmd_status(self, _args: argparse.Namespace) -> None:
        session = self._current()
        if session is None:
            print("not connected; run %amigo connect")
            return
        print(f"state:            {session.state}")
        print(f"conversation:     {session.conversation_id}")
        params = session.params
        print(f"formats:          response {params.response_format}, audio {params.audio_format or '-'}")
        print(f"turns:            {len(session.turns)}")
        print(f"frames logged:    {len(session.log)}")
        print(f"log folder:       {session.log.path}")

    def _cmd_log(self, args: argparse.Namespace) -> Any:
        frames = self._require_session().frames
        if args.type_pattern:
            pattern = args.type_pattern
            mask = frames["type"].astype(str).map(lambda t: t == pattern or fnmatch.fnmatchcase(t, pattern))
            frames = frames[mask]
        if args.n < 0:
            raise UsageError("-n must be 0 (all entries) or more")
        frames = frames.loc[:, [c for c in LOG_COLUMNS if c in frames.columns]]
        return frames.tail(args.n) if args.n else frames

    def _cmd_save(self, args: argparse.Namespace) -> None:
        path = self._require_session().save(args.dir)
        print(f"saved to {path}")

    def _cmd_finish(self, _args: argparse.Namespace) -> None:
        self._require_session().finish()
        print("conversation finished")

    def _cmd_close(self, _args: argparse.Namespace) -> None:
        self._require_session().close()
        print("connection closed")

    def _run_cell(self, line: str, cell: str) -> None:
        if line.strip():
            raise UsageError("%%amigo takes no arguments: every line of the cell is a user turn")
        turns = [text.strip() for text in cell.splitlines() if text.strip() and not text.strip().startswith("#")]
        if not turns:
            raise UsageError("%%amigo needs at least one line of text, one user turn per line")
        session = self._require_session()
        for text in turns:
            print(f"you: {text}")
            self._print_reply(session.say(text).result())

    def shutdown(self) -> None:
        """Close the panel (releasing the microphone) and the session the magics opened."""
        if self.panel is not None:
            self.panel.close()
            self.panel = None
        if self.session is not None:
            self.session.close()
            self.session = None

    # --- helpers -------------------------------------------------------------------------------------------

    def _current(self) -> Any:
        if self.session is None and self.panel is not None and self.panel.session is not None:
            self.session = self.panel.session       # connected from the panel's button
            self.shell.push({SESSION_VARIABLE: self.session})
        return self.session

    def _require_session(self) -> Any:
        session = self._current()
        if session is None:
            raise UsageError("not connected: run %amigo connect first (or %amigo mic and click Connect)")
        return session

    @staticmethod
    def _print_reply(reply: Any) -> None:
        if reply.filler_text:
            print(f"agent (filler): {reply.filler_text}")
        suffix = " [interrupted]" if reply.interrupted else ""
        print(f"agent: {reply.text}{suffix}")
        if reply.conversation_completed:
            print("(the agent ended the conversation)")


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register ``%amigo`` / ``%%amigo``; IPython calls this on ``%load_ext amigo_lab``."""
    ipython.register_magics(AmigoMagics)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Close what the magics opened; IPython calls this on ``%unload_ext amigo_lab``."""
    magics = ipython.magics_manager.registry.get(AmigoMagics.__name__)
    if magics is not None:
        magics.shutdown()
