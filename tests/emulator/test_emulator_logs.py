"""No token in any log record of the emulator, at any level (the websockets library logs handshake
headers at DEBUG, and the token travels in one)."""

from __future__ import annotations

import logging

from emulator_wire import WireClient

from amigo_lab.emulator import Emulator
from amigo_lab.emulator.logs import RedactingFilter

SECRET = "s3cr3t-Token-9f8e7d"


def test_the_token_is_in_no_record_at_debug(caplog):
    caplog.set_level(logging.DEBUG)
    with Emulator(realtime=False, token=SECRET) as emu:
        good = WireClient(emu.port, token=SECRET)
        good.start()
        good.interaction()
        good.say("what time do you open")
        good.interaction()
        good.close()
        bad = WireClient(emu.port, token=SECRET + "-wrong")
        assert bad.expect_close()[0] == 4401
        bad.close()
    handshake = [r for r in caplog.records if r.name == "amigo_lab.emulator.websockets"]
    assert any("Sec-WebSocket-Protocol" in r.getMessage() for r in handshake)  # the headers were logged
    # The test's own wire client logs under websockets.client; the emulator's records are all the others.
    emulator_records = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert len(emulator_records) > 20
    for record in emulator_records:
        rendered = record.getMessage() + (record.exc_text or "") + (record.stack_info or "")
        assert SECRET not in rendered, (record.name, rendered)


def test_the_filter_redacts_arguments_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "header %s", ("bearer.authorization.amigo.ai.abc",),
                               None)
    try:
        raise ValueError(f"bad {SECRET}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert RedactingFilter(lambda: [SECRET]).filter(record)
    assert "abc" not in record.getMessage() and SECRET not in record.exc_text and record.exc_info is None
