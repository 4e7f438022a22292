"""The session's lifecycle table: complete, closed under its own states, and strict where it must be."""

from amigo_lab.session.lifecycle import LIFECYCLE, TERMINAL, Event, SessionState, next_state


def test_every_state_has_a_row_and_every_move_lands_on_a_state():
    assert set(LIFECYCLE) == set(SessionState)
    for row in LIFECYCLE.values():
        assert all(isinstance(event, Event) and isinstance(target, SessionState) for event, target in row.items())


def test_a_closed_or_failed_session_only_opens_again():
    for state in TERMINAL:
        assert set(LIFECYCLE[state]) == {Event.OPEN}
        assert next_state(state, Event.LOST) is None


def test_a_transient_loss_reconnects_only_an_active_conversation():
    assert next_state(SessionState.ACTIVE, Event.LOST) is SessionState.RECONNECTING
    assert next_state(SessionState.INITIALISING, Event.LOST) is SessionState.CLOSED
    # While reconnecting, the attempts' own opening and initialising keep it reconnecting until acked.
    for event in (Event.OPENED, Event.OPEN_FAILED, Event.INIT_SENT, Event.LOST):
        assert next_state(SessionState.RECONNECTING, event) is SessionState.RECONNECTING
    assert next_state(SessionState.RECONNECTING, Event.OPEN) is None
    assert next_state(SessionState.RECONNECTING, Event.INIT_ACKED) is SessionState.ACTIVE


def test_a_failed_initialisation_leaves_the_socket_usable_but_a_failed_resume_while_reconnecting_does_not():
    assert next_state(SessionState.INITIALISING, Event.INIT_FAILED) is SessionState.CONNECTED
    assert next_state(SessionState.RECONNECTING, Event.INIT_FAILED) is SessionState.FAILED
