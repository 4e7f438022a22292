"""The public surface of ``amigo_lab`` is explicit, pinned here, and cheap to import."""

import subprocess
import sys

import amigo_lab

PINNED = [
    "AmigoError", "ConnectionClosedError", "Emulator", "FrameLog", "RecordedSession", "Reply", "ResponseTimeoutError",
    "Session",
    "SessionError", "Turn", "TurnError", "__version__", "connect", "load_ipython_extension", "load_session",
    "unload_ipython_extension",
]


def test_all_is_pinned():
    assert sorted(amigo_lab.__all__) == sorted(PINNED)


def test_every_public_name_resolves_and_has_a_docstring():
    for name in amigo_lab.__all__:
        value = getattr(amigo_lab, name)
        if name != "__version__":
            assert value.__doc__, f"amigo_lab.{name} has no docstring"


def test_import_is_light():
    code = ("import sys, amigo_lab; heavy = [m for m in ('pandas', 'librosa', 'plotly', 'ipywidgets', 'websockets')"
            " if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"import amigo_lab pulled in {out}"


def test_unknown_attribute_is_a_clear_error():
    try:
        amigo_lab.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_connect_stays_a_function_after_its_module_is_imported():
    import amigo_lab._connect  # what the magics and widgets import

    assert callable(amigo_lab.connect) and amigo_lab.connect.__module__ == "amigo_lab._connect"
