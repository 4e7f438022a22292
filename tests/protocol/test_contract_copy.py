"""The repository carries a copy of the protocol contract; it must not drift from the shared original."""

from pathlib import Path

import pytest

COPY = Path(__file__).resolve().parents[2] / "amigo_lab" / "protocol" / "protocol.md"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "protocol.md"


def test_copy_matches_the_shared_contract():
    if not SHARED.exists():
        pytest.skip(f"no shared contract at {SHARED} to compare with")
    assert COPY.read_text(encoding="utf-8") == SHARED.read_text(encoding="utf-8"), (
        f"{COPY} differs from {SHARED}: copy the shared contract over (never edit rows marked D)")


def test_every_frame_type_of_the_contract_has_a_frame_class():
    from amigo_lab.protocol import FRAME_TYPES

    text = COPY.read_text(encoding="utf-8")
    for wire_type in FRAME_TYPES:
        assert f"`{wire_type}`" in text, wire_type
