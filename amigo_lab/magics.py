"""IPython magics: ``%amigo`` and ``%%amigo``, a thin layer over the session and the widgets.

Load with ``%load_ext amigo_lab``, then ``%amigo connect`` and talk; ``%amigo?`` lists every command.
The connected session is also put in the notebook as ``amigo_session`` for everything the magics do not
cover (``amigo_session.frames``, ``amigo_session.send_audio(...)``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import shlex
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

from amigo_lab.errors import AmigoError

__all__ = ["AmigoMagics", "MagicError", "load_ipython_extension", "unload_ipython_extension"]

SESSION_VARIABLE = "amigo_session"
"""Name under which ``%amigo connect`` puts the session into the notebook's namespace."""

LOG_ROWS = 20
"""Rows ``%amigo log`` shows by default (``-n 0`` shows all)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser that reports mistakes as IPython usage errors instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}\n{self.format_usage().strip()}\nSee %amigo? for every command.")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        # Only reached after --help printed its text; stop quietly.
        raise _HelpShown()


class _HelpShown(Exception):
    """--help was asked for and printed."""


class MagicError(AmigoError):
    """A ``%amigo`` command failed for an ordinary reason (wrong token, missing file, conversation over).

    IPython shows it in a few lines: what went wrong and what to do, in the magic's terms. The library error
    behind it stays attached as ``__cause__``, and ``%tb`` right after shows that error's full traceback.
    """

    def __init__(self, command: str, message: str, hint: str = "") -> None:
        self.command = command
        self.message = message
        self.hint = hint
        super().__init__(f"%amigo {command}: {message}" + (f"\nhint: {hint}" if hint else ""))

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of formatting a traceback. Leaving the cause as the "last exception"
        # makes a following %tb show where it came from, which is what a user asks %tb for.
        cause = self.__cause__
        if cause is not None:
            sys.last_type, sys.last_value, sys.last_traceback = type(cause), cause, cause.__traceback__
            if sys.version_info >= (3, 12):
                sys.last_exc = cause
        lines = [f"\x1b[0;31m%amigo {self.command}:\x1b[0m {self.message}"]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        if cause is not None:
            lines.append("(%tb shows the full traceback)")
        return lines


# --- the trailing "?" of questions ----------------------------------------------------------------------
#
# IPython reads a line ending in "?" as a help request ("%amigo say ... hours?" would print "Object `hours`
# not found."). This cleanup transform runs before that rule and turns every "%amigo say|event" line into
# the call IPython would have made, so the text reaches the magic untouched.

_TEXT_MAGIC_LINE = re.compile(r"^(?P<indent>[ \t]*)%amigo[ \t]+(?P<rest>(?:say|event)(?:[ \t].*)?)$")


def _keep_question_marks(lines: list[str]) -> list[str]:
    """Input transformer: ``%amigo say|event TEXT`` lines become ``run_line_magic`` calls, "?" kept."""
    if lines and lines[0].lstrip().startswith("%%"):
        return lines        # a cell magic's body is its own business
    out = []
    for line in lines:
        body = line.rstrip("\r\n")
        match = _TEXT_MAGIC_LINE.match(body)
        if match is None or not match["rest"].rstrip().endswith("?"):
            out.append(line)
            continue
        newline = line[len(body):]
        out.append(f"{match['indent']}get_ipython().run_line_magic('amigo', {match['rest'].strip()!r}){newline}")
    return out


# --- ordinary mistakes, in the magic's terms --------------------------------------------------------------

# Library messages give advice for the Python API; a magic's user types flags instead.
_API_TO_MAGIC = (
    (re.compile(r"pass (?:start|connect)\(service_id=\.\.\.\)(?: or (?:start|connect)\(service_id=\.\.\.\))?"),
     "add --service ID"),
    (re.compile(r"pass a larger timeout to connect\(\)"), "try again"),
    (re.compile(r"call session\.start\(\) or session\.resume\(conversation_id\) first"), "run %amigo connect first"),
    (re.compile(r"session\.start\(\)|start\(\)"), "%amigo connect"),
    (re.compile(r"Call connect\(\) with neither"), "Give neither --org nor --token"),
    (re.compile(r"connect\(\)"), "%amigo connect"),
)

_CLOSE_HINTS = {
    4401: "check --token (or AMIGO_TOKEN): a current JWT from the Amigo console",
    4403: "this conversation belongs to another user; %amigo connect starts one of your own",
    4404: "check --org, --service and --region (an organization lives in one region)",
    4409: "an unfinished conversation of this user is open elsewhere: finish it there, or %amigo connect with "
          "another --token",
    4429: "wait a minute, then %amigo connect again",
}


def _in_magic_terms(text: str) -> str:
    for pattern, replacement in _API_TO_MAGIC:
        text = pattern.sub(replacement, text)
    return text


def _explain(command: str, exc: BaseException, session: Any) -> MagicError:
    """The few lines a user sees for ``exc`` raised while running ``%amigo command``."""
    from amigo_lab.session import ConnectionClosedError

    message = _in_magic_terms(str(exc).strip()) or type(exc).__name__
    hint = ""
    if isinstance(exc, ConnectionClosedError):
        if command == "connect":
            hint = _CLOSE_HINTS.get(exc.code, "")
        elif session is not None and session.state in ("closed", "failed"):
            message = "the conversation is over or its connection closed" + (
                f" ({_in_magic_terms(str(exc))})" if exc.code != 1000 else "")
            hint = "%amigo connect starts a new conversation"
    elif isinstance(exc, FileNotFoundError):
        message = f"no such file: {exc.filename or exc}"
        hint = "give the path of a WAV, FLAC or MP3 file, relative to the notebook's folder"
    elif command == "connect" and "could not connect" in message:
        hint = "check --host and --region, and the network"
    return MagicError(command, message, hint)


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

    for name, what in (("say", "send a user message, print the agent's reply"),
                       ("event", "send an external event, print the reply it leads to")):
        # Only parsed for --help: the rest of the line is sent verbatim (see _TEXT_COMMANDS).
        text = commands.add_parser(name, help=what, description=f"{what}. The rest of the line is the text, "
                                   "sent as typed (quotes, apostrophes and a trailing ? included).")
        text.add_argument("text", nargs=argparse.REMAINDER, help="the text to send")

    send = commands.add_parser("send", help="send an audio file as one user turn")
    send.add_argument("file")
    send.add_argument("--fast", action="store_true", help="send as fast as allowed, not in real time")

    vad = commands.add_parser("vad", help="switch the server's voice activity detection")
    vad.add_argument("switch", choices=("on", "off"))

    mic = commands.add_parser("mic", help="show the session panel with microphone and player")
    mic.add_argument("--vad", action="store_true", help="microphone in VAD mode instead of push-to-talk")

    commands.add_parser("status", help="connection and conversation state")

    log = commands.add_parser("log", help="the frame log as a readable table (audio runs folded)")
    log.add_argument("-n", type=int, default=LOG_ROWS, help=f"last N rows (0: all; default {LOG_ROWS})")
    log.add_argument("--include", "--type", dest="include", action="append", metavar="PATTERN",
                     help="only these types (glob, e.g. 'server.vad-*'; 'audio' for every audio entry); repeatable")
    log.add_argument("--exclude", action="append", metavar="PATTERN",
                     help="leave these types out (same patterns); repeatable")
    log.add_argument("--full", action="store_true", help="every column, one row per entry (exact wire JSON too)")

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
        self._key: tuple[Any, ...] | None = None     # (org, token, host, service) of self.session
        self._live: _LiveText | None = None           # the last say/event reply line, maybe still filling in
        self._parser = _build_parser()

    @line_cell_magic
    def amigo(self, line: str, cell: str | None = None) -> Any:
        """Talk to an Amigo voice agent (or the embedded emulator) from the notebook.

        Line magic, one command per line::

            %amigo connect [--org ORG --token JWT] [--region R] [--service ID] [--host H] [--text] [--mp3]
                                      connect; without org/token the embedded emulator answers
            %amigo say TEXT           send a user message; the reply line fills in as the agent speaks
            %amigo event TEXT         send an external event, print the reply it leads to
            %amigo send FILE [--fast] send an audio file as one user turn
            %amigo vad on|off         switch the server's voice activity detection
            %amigo mic [--vad]        show the panel: microphone, player, transcript (▶ replays a turn),
                                      live timeline, latency waterfall, every frame in the inspector
            %amigo status             connection and conversation state
            %amigo log [-n N] [--include PATTERN] [--exclude PATTERN] [--full]
                                      the frame log, audio runs folded into one row (last 20 rows);
                                      --full: every column, one row per entry
            %amigo save DIR           save the recorded session (frames, audio, meta) to DIR
            %amigo finish             finish the conversation for good
            %amigo close              close the connection (the conversation can be continued)

        Cell magic: every non-empty line of the cell is a user turn, sent in order; each is printed
        with the agent's reply (lines starting with # are skipped)::

            %%amigo
            what are your opening hours
            and on sunday?

        Questions keep their ``?`` (``%amigo say What are your opening hours?``). ``%amigo COMMAND --help``
        shows one command's options. A command that fails shows what went wrong and what to do in a few
        lines; ``%tb`` right after shows the full traceback. After ``connect`` the session is also available
        as ``amigo_session``.
        """
        words = line.split(None, 1)
        command = "cell" if cell is not None else (words[0] if words else "")
        try:
            return self._dispatch(line, cell, words)
        except (UsageError, MagicError, KeyboardInterrupt):
            raise
        except (AmigoError, OSError) as exc:
            raise _explain(command, exc, self.session) from exc

    def _dispatch(self, line: str, cell: str | None, words: list[str]) -> Any:
        if cell is not None:
            return self._run_cell(line, cell)
        if not words:
            raise UsageError("%amigo needs a command, e.g. %amigo connect. See %amigo? for every command.")
        command = words[0]
        if command in _TEXT_COMMANDS:
            text = words[1].strip() if len(words) > 1 else ""
            if text in ("-h", "--help"):
                self._print_help(command)
                return None
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

    def _print_help(self, command: str) -> None:
        try:
            self._parser.parse_args([command, "--help"])
        except _HelpShown:
            pass

    # --- commands ----------------------------------------------------------------------------------------

    def _cmd_connect(self, args: argparse.Namespace) -> None:
        from amigo_lab._connect import ENV_ORG, ENV_SERVICE_ID, ENV_TOKEN, connect

        self._wait_for_live_reply()
        org = args.org or os.environ.get(ENV_ORG) or None
        token = args.token or os.environ.get(ENV_TOKEN) or None
        if (org is None) != (token is None):
            missing = "--token (or AMIGO_TOKEN)" if token is None else "--org (or AMIGO_ORG)"
            raise UsageError(f"connecting to Amigo needs both --org and --token; {missing} is missing. "
                             "Give neither to talk to the embedded emulator.")
        service = args.service or (os.environ.get(ENV_SERVICE_ID) if org else None) or None
        if org is not None and not service:
            raise UsageError("which service? add --service ID (24 hex characters, from the Amigo console) "
                             "or set AMIGO_SERVICE_ID")
        options = {"region": args.region, "service_id": service, "host": args.host,
                   "response_format": "text" if args.text else "voice",
                   "audio_format": "mp3" if args.mp3 else "pcm"}
        key = (org, token, args.host or os.environ.get("AMIGO_HOST") or None, service)
        old = self.session if self.session is not None and self.session.state not in _ENDED_STATES else None
        if old is not None and key == self._key:
            # Same user and service: the server allows one connection and one unfinished conversation, so
            # the old conversation can only end once the new socket is known to open (host reachable).
            session = connect(org, token, start=False, **options)
            try:
                old.finish()
                session.start()
            except BaseException:
                _close_quietly(session)
                raise
        else:
            # Connect first: the conversation already running stays until the new one is up.
            session = connect(org, token, **options)
            if old is not None:
                _close_quietly(old, finish=True)
        self.session, self._key = session, key
        self._retire_panel_session(session)
        assert self.shell is not None  # magics are only ever registered on a running shell
        self.shell.push({SESSION_VARIABLE: session})
        print(f"connected: conversation {session.conversation_id}")
        greeting = session.greeting
        if greeting is not None:
            print(f"agent: {greeting.result().text}")

    def _say(self, text: str) -> None:
        session = self._require_session()
        self._show_reply("say", session, lambda: session.say(text))

    def _event(self, text: str) -> None:
        session = self._require_session()
        self._show_reply("event", session, lambda: session.event(text))

    def _show_reply(self, command: str, session: Any, send: Callable[[], Any]) -> None:
        """Send a turn and show its reply.

        In a notebook the reply is one output line redrawn in place as the agent's words arrive. The cell
        returns once a text reply is complete or, for a voice reply, once its audio has started to stream:
        the line goes on filling in after the cell has returned and ends as the complete reply (or as the
        error, in the magic's terms), while the audio plays on in the panel. Elsewhere (a terminal) the reply
        is printed once complete.
        """
        if not _in_kernel(self.shell):
            self._print_reply(send().result())
            return
        self._wait_for_live_reply()
        live = _LiveText(command, session)
        remove = session.on_frame(live.on_entry)
        try:
            turn = send()
        except BaseException:
            remove()
            live.finish(None)
            raise
        turn.add_done_callback(lambda _turn: remove())
        live.follow(turn)
        self._live = live
        try:
            while not live.streaming.wait(_LIVE_EVERY_S):
                pass
        except KeyboardInterrupt:
            turn.cancel()       # the user gave up waiting: the line says so, the session stays usable
            raise
        if live.error_for_cell is not None:
            raise live.error_for_cell

    def _wait_for_live_reply(self) -> None:
        """Let the reply a previous ``say``/``event`` cell left streaming finish before the conversation
        moves on, so cells run one after another ("Run All") keep the turns in order."""
        live = self._live
        if live is not None:
            live.join()
            self._live = None

    def _cmd_send(self, args: argparse.Namespace) -> None:
        self._wait_for_live_reply()
        reply = self._require_session().send_audio(args.file, realtime=not args.fast).result()
        print(f"you (heard): {reply.user_text}")
        self._print_reply(reply)

    def _cmd_vad(self, args: argparse.Namespace) -> None:
        self._wait_for_live_reply()
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
        from amigo_lab.framelog import frames_view

        if args.n < 0:
            raise UsageError("-n must be 0 (all rows) or more")
        frames = frames_view(self._require_session().frames, include=args.include, exclude=args.exclude,
                             full=args.full)
        return frames.tail(args.n) if args.n else frames

    def _cmd_save(self, args: argparse.Namespace) -> None:
        path = self._require_session().save(args.dir)
        print(f"saved to {path}")

    def _cmd_finish(self, _args: argparse.Namespace) -> None:
        self._wait_for_live_reply()
        self._require_session().finish()
        print("conversation finished")

    def _cmd_close(self, _args: argparse.Namespace) -> None:
        self._wait_for_live_reply()
        self._require_session().close()
        print("connection closed")

    def _run_cell(self, line: str, cell: str) -> None:
        if line.strip():
            raise UsageError("%%amigo takes no arguments: every line of the cell is a user turn")
        turns = [text.strip() for text in cell.splitlines() if text.strip() and not text.strip().startswith("#")]
        if not turns:
            raise UsageError("%%amigo needs at least one line of text, one user turn per line")
        session = self._require_session()
        self._wait_for_live_reply()
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
            assert self.shell is not None  # magics are only ever registered on a running shell
            self.shell.push({SESSION_VARIABLE: self.session})
        return self.session

    def _require_session(self) -> Any:
        session = self._current()
        if session is None:
            raise UsageError("not connected: run %amigo connect first (or %amigo mic and click Connect)")
        return session

    def _retire_panel_session(self, session: Any) -> None:
        if self.panel is not None and self.panel.session is not session:
            self.panel.attach(session)      # the panel on screen follows the new conversation

    @staticmethod
    def _print_reply(reply: Any) -> None:
        for line in _reply_lines(reply):
            print(line)


def _reply_lines(reply: Any) -> list[str]:
    lines = [f"agent (filler): {reply.filler_text}"] if reply.filler_text else []
    lines.append(f"agent: {reply.text}{' [interrupted]' if reply.interrupted else ''}")
    if reply.conversation_completed:
        lines.append("(the agent ended the conversation)")
    return lines


_LIVE_EVERY_S = 0.1
"""How often the live reply line is redrawn while the agent speaks."""


def _in_kernel(shell: Any) -> bool:
    """True in a Jupyter kernel (a front end that redraws a display in place), False in a terminal."""
    return getattr(shell, "kernel", None) is not None


def _close_quietly(session: Any, *, finish: bool = False) -> None:
    try:
        session.finish() if finish else session.close()
    except AmigoError:
        pass        # it is being replaced or was never up; its log says what happened


class _LiveText:
    """One ``say``/``event`` reply line in the notebook. Frame-log entries arrive on the session's loop
    thread; a small thread of its own redraws the line until the turn ends, so the line keeps filling in
    after the cell has returned. The line is displayed by the cell that runs (a display belongs to it)."""

    def __init__(self, command: str, session: Any) -> None:
        self._command = command
        self._session = session
        self._lock = threading.Lock()
        self._texts: dict[str, str] = {}
        self._shown = ""
        self._cell_returned = False
        #: Set once the cell may return: the agent's audio is streaming, or the turn has ended.
        self.streaming = threading.Event()
        #: The turn's error, when it failed before the cell returned (the cell raises it, the line stays empty).
        self.error_for_cell: BaseException | None = None
        self._ended = threading.Event()
        self._handle = display({"text/plain": "agent: …"}, raw=True, display_id=True)

    def on_entry(self, entry: dict[str, Any], _frame: Any) -> None:
        if entry.get("direction") != "received" or entry.get("type") != "server.new-message":
            return
        is_audio = entry.get("audio_format") is not None
        piece = _alignment_text(entry.get("alignment")) if is_audio else entry.get("text")
        with self._lock:
            if piece:
                key = str(entry.get("message_id") or "")
                self._texts[key] = self._texts.get(key, "") + str(piece)
            if is_audio:
                self._let_cell_return()

    def follow(self, turn: Any) -> None:
        """Redraw the line until ``turn`` ends, then show the complete reply (or what went wrong)."""
        threading.Thread(target=self._follow, args=(turn,), name="amigo-reply-line", daemon=True).start()

    def join(self) -> None:
        """Wait (interruptibly) until the line shows its final form."""
        while not self._ended.wait(_LIVE_EVERY_S):
            pass

    def _follow(self, turn: Any) -> None:
        done = threading.Event()
        turn.add_done_callback(lambda _turn: done.set())
        while not done.wait(_LIVE_EVERY_S):
            self._draw_partial()
        try:
            lines = _reply_lines(turn.result())
        except concurrent.futures.CancelledError:
            lines = [f"agent: {self._text()}… (stopped waiting for the reply)"]
        except BaseException as exc:
            with self._lock:
                in_cell = not self._cell_returned
                if in_cell:
                    self.error_for_cell = exc
            if in_cell:
                lines = []      # the cell raises it, in a few lines of its own
            else:
                error = _explain(self._command, exc, self._session)
                lines = [f"%amigo {error.command}: {error.message}", *([f"hint: {error.hint}"] if error.hint else [])]
        self._update("\n".join(lines))
        with self._lock:
            self._let_cell_return()
        self._ended.set()

    def _let_cell_return(self) -> None:
        # Called with the lock held, so the cell's return and a late failure agree on who shows the error.
        self._cell_returned = True
        self.streaming.set()

    def _text(self) -> str:
        with self._lock:
            return " / ".join(self._texts.values())

    def _draw_partial(self) -> None:
        text = self._text()
        if text and text != self._shown:
            self._shown = text
            self._update(f"agent: {text}…")

    def _update(self, text: str) -> None:
        self._handle.update({"text/plain": text}, raw=True)

    def finish(self, lines: list[str] | None) -> None:
        """End the line now, with ``lines`` (None: nothing, when the turn could not even be sent)."""
        self._update("\n".join(lines or []))
        self.streaming.set()
        self._ended.set()


def _alignment_text(alignment: Any) -> str:
    import json

    if not alignment:
        return ""
    try:
        pairs = json.loads(alignment) if isinstance(alignment, str) else alignment
        return "".join(str(pair[1]) for pair in pairs)
    except (ValueError, TypeError, IndexError):
        return ""


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """Register ``%amigo`` / ``%%amigo``; IPython calls this on ``%load_ext amigo_lab``."""
    ipython.register_magics(AmigoMagics)
    if _keep_question_marks not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(_keep_question_marks)


def unload_ipython_extension(ipython: InteractiveShell) -> None:
    """Close what the magics opened; IPython calls this on ``%unload_ext amigo_lab``."""
    magics = ipython.magics_manager.registry.get(AmigoMagics.__name__)
    if magics is not None:
        magics.shutdown()
    if _keep_question_marks in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(_keep_question_marks)
