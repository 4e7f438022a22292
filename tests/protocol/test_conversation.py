"""The conversation state machine, driven in memory from both ends (no event loop, no sockets)."""

import pytest

from amigo_lab import protocol as p

SERVICE = "6650a1b2c3d4e5f6a7b8c9d0"


class Pair:
    """A client and a server Conversation wired back to back, like h11's ConnectionPair."""

    def __init__(self):
        self.client = p.Conversation(p.Role.CLIENT)
        self.server = p.Conversation(p.Role.SERVER)

    def client_sends(self, frame):
        self.client.send(frame)
        for text in self.client.data_to_send():
            self.server.receive(text)
        return self.server.events_received()

    def server_sends(self, frame):
        self.server.send(frame)
        for text in self.server.data_to_send():
            self.client.receive(text)
        return self.client.events_received()

    def states(self):
        return self.client.state, self.server.state


@pytest.fixture
def active():
    pair = Pair()
    pair.client_sends(p.StartConversation(service_id=SERVICE))
    pair.server_sends(p.ConversationCreated(conversation_id="c" * 24))
    return pair


def test_start_then_created_makes_both_ends_active(active):
    assert active.states() == (p.State.ACTIVE, p.State.ACTIVE)
    assert active.client.conversation_id == active.server.conversation_id == "c" * 24


def test_a_full_turn_flows(active):
    active.client_sends(p.NewTextMessage(text="hello"))
    active.server_sends(p.UserMessageAvailable(message_id="u1", user_message="hello"))
    for i, piece in enumerate(["Hi ", "there"]):
        active.server_sends(p.NewMessage(message=piece, stop=i == 1, sequence_number=i, message_id="a1"))
    got = active.server_sends(p.InteractionComplete(message_id="a1", interaction_id="i1", full_message="Hi there",
                                                    conversation_completed=False))
    assert got[0].full_message == "Hi there"
    assert active.states() == (p.State.ACTIVE, p.State.ACTIVE)


def test_text_before_initialise_is_local_error_and_state_unchanged():
    conv = p.Conversation(p.Role.CLIENT)
    with pytest.raises(p.LocalProtocolError, match=r"allowed now: client.close-connection"):
        conv.send(p.NewTextMessage(text="hi"))
    assert conv.state is p.State.CONNECTED and conv.data_to_send() == []


def test_server_sees_premature_frame_as_remote_error_and_keeps_state():
    conv = p.Conversation(p.Role.SERVER)
    with pytest.raises(p.RemoteProtocolError) as info:
        conv.receive('{"type":"client.new-text-message","text":"hi","message_type":"user-message"}')
    assert info.value.http_error_code == 400 and info.value.frame == p.NewTextMessage(text="hi")
    assert conv.state is p.State.CONNECTED


def test_second_start_is_illegal_on_both_ends(active):
    with pytest.raises(p.LocalProtocolError):
        active.client.send(p.StartConversation(service_id=SERVICE))
    with pytest.raises(p.RemoteProtocolError):
        active.server.receive(p.serialize(p.StartConversation(service_id=SERVICE)))
    assert active.states() == (p.State.ACTIVE, p.State.ACTIVE)


def test_server_error_during_initialise_returns_to_connected():
    pair = Pair()
    pair.client_sends(p.ContinueConversation(conversation_id="d" * 24))
    pair.server_sends(p.ServerError(http_error_code=404, error_description="no such conversation"))
    assert pair.states() == (p.State.CONNECTED, p.State.CONNECTED)


def test_agent_completing_the_conversation_forbids_more_turns(active):
    active.server_sends(p.InteractionComplete(message_id="m", interaction_id="i", full_message="Bye",
                                              conversation_completed=True))
    assert active.states() == (p.State.COMPLETED, p.State.COMPLETED)
    with pytest.raises(p.LocalProtocolError):
        active.client.send(p.NewTextMessage(text="wait"))


def test_after_finish_frames_in_flight_still_arrive(active):
    active.client_sends(p.FinishConversation())
    active.server_sends(p.NewMessage(message="late", stop=True, sequence_number=0, message_id="m"))
    assert active.states() == (p.State.FINISHING, p.State.FINISHING)
    with pytest.raises(p.LocalProtocolError):
        active.client.send(p.NewTextMessage(text="more"))


def test_close_connection_then_socket_closed(active):
    active.client_sends(p.CloseConnection())
    assert active.client.state is p.State.CLOSING
    active.client.connection_closed(1000, "bye")
    assert active.client.state is p.State.CLOSED and active.client.close_code == 1000


def test_client_tolerates_unknown_server_frames_server_rejects_unknown_client_frames(active):
    got = active.client.receive('{"type":"server.something-new","x":1}')
    assert isinstance(got, p.UnknownFrame) and active.client.state is p.State.ACTIVE
    with pytest.raises(p.RemoteProtocolError, match="unknown frame type"):
        active.server.receive('{"type":"client.something-new"}')


def test_each_end_sends_only_its_own_direction(active):
    with pytest.raises(p.LocalProtocolError):
        active.client.send(p.ConversationCreated(conversation_id="x"))
    with pytest.raises(p.RemoteProtocolError):
        active.server.receive(p.serialize(p.ConversationCreated(conversation_id="x")))
    # The client reports a client frame coming from the server, and still delivers it.
    got = active.client.receive(p.serialize(p.NewTextMessage(text="echo")))
    assert active.client.events_received() == [got]
    [violation] = active.client.violations_received()
    assert "cannot receive client.new-text-message" in violation.description and violation.frame == got


def test_server_sending_pieces_must_rise_from_zero_and_stop_once(active):
    with pytest.raises(p.LocalProtocolError, match="want 0"):
        active.server.send(p.NewMessage(message="x", stop=False, sequence_number=1, message_id="m"))
    active.server_sends(p.NewMessage(message="a", stop=False, sequence_number=0, message_id="m"))
    with pytest.raises(p.LocalProtocolError, match="jumped"):
        active.server.send(p.NewMessage(message="c", stop=False, sequence_number=2, message_id="m"))
    with pytest.raises(p.LocalProtocolError, match="no sequence_number"):
        active.server.send(p.NewMessage(message="c", message_id="m"))
    active.server_sends(p.NewMessage(message="b", stop=True, sequence_number=1, message_id="m"))
    with pytest.raises(p.LocalProtocolError, match="after stop"):
        active.server.send(p.NewMessage(message="d", stop=False, sequence_number=2, message_id="m"))


def test_server_never_sends_a_frame_with_problems(active):
    with pytest.raises(p.LocalProtocolError, match=r"malformed.*transcript_alignment"):
        active.server.send(p.NewMessage(message="x", sequence_number=0, message_id="m",
                                        transcript_alignment="garbage"))  # type: ignore[arg-type]


def piece(n, *, stop=False, mid="m"):
    return p.serialize(p.NewMessage(message="x", stop=stop, sequence_number=n, message_id=mid))


def test_client_delivers_pieces_out_of_sequence_and_reports_each_rule_once(active):
    client = active.client
    texts = [piece(1), piece(2), piece(4), piece(5, stop=True), piece(6)]
    for text in texts:
        client.receive(text)
    assert [f.sequence_number for f in client.events_received()] == [1, 2, 4, 5, 6]
    assert [v.description for v in client.violations_received()] == [
        "first piece of message m has sequence_number 1, want 0",
        "message m jumped from sequence_number 2 to 4",
        "piece after stop for message m",
    ]


def test_client_counts_on_when_the_server_omits_sequence_numbers(active):
    client = active.client
    for text in ('{"type":"server.new-message","message":"a","message_id":"m"}',
                 '{"type":"server.new-message","message":"b","message_id":"m","sequence_number":1}',
                 '{"type":"server.new-message","message":"c","message_id":"m"}',
                 '{"type":"server.new-message","message":"d","message_id":"m","sequence_number":3,"stop":true}'):
        client.receive(text)
    assert len(client.events_received()) == 4 and client.violations_received() == []


def test_client_reports_frames_illegal_in_the_state_and_keeps_the_state():
    client = p.Conversation(p.Role.CLIENT)
    frame = client.receive(piece(0))
    assert client.events_received() == [frame] and client.state is p.State.CONNECTED
    [violation] = client.violations_received()
    assert "not allowed while the conversation is connected" in violation.description


def test_client_reports_lenient_read_problems_as_violations(active):
    frame = active.client.receive('{"type":"server.new-message","message":"x","sequence_number":0,'
                                  '"message_id":"m","transcript_alignment":"?"}')
    [violation] = active.client.violations_received()
    assert violation.frame is frame and violation.description.startswith("server.new-message: transcript_alignment")


def test_a_late_piece_after_complete_is_reported_as_after_stop(active):
    active.server_sends(p.NewMessage(message="a", stop=True, sequence_number=0, message_id="m"))
    active.server_sends(p.InteractionComplete(message_id="m", interaction_id="i", full_message="a"))
    active.client.receive(piece(1, mid="m"))
    assert [v.description for v in active.client.violations_received()] == ["piece after stop for message m"]


def test_piece_checks_remember_a_bounded_number_of_messages(active):
    for n in range(100):
        active.client.receive(piece(0, stop=True, mid=f"m{n}"))
    assert len(active.client._pieces) == 64 and "m99" in active.client._pieces and "m0" not in active.client._pieces


def test_server_applies_strict_checks_to_client_ids():
    server = p.Conversation(p.Role.SERVER)
    with pytest.raises(p.RemoteProtocolError, match="24 lowercase hex"):
        server.receive('{"type":"client.continue-conversation","conversation_id":"not-hex"}')
    assert server.state is p.State.CONNECTED


def test_client_continues_with_any_id_format_and_takes_an_unknown_ack_name():
    client = p.Conversation(p.Role.CLIENT)
    client.send(p.ContinueConversation(conversation_id="conv-42"))
    client.receive('{"type":"server.conversation-resumed-v2","conversation_id":"conv-42"}')
    assert client.state is p.State.ACTIVE and client.conversation_id == "conv-42"
    assert isinstance(client.events_received()[0], p.UnknownFrame) and client.violations_received() == []


def test_client_ack_for_another_conversation_is_reported_and_keeps_waiting():
    client = p.Conversation(p.Role.CLIENT)
    client.send(p.ContinueConversation(conversation_id="conv-42"))
    client.receive('{"type":"server.conversation-continued","conversation_id":"conv-7"}')
    assert client.state is p.State.INITIALISING
    [violation] = client.violations_received()
    assert "conv-7, not conv-42" in violation.description


def test_client_created_ack_without_id_is_active_and_reported():
    client = p.Conversation(p.Role.CLIENT)
    client.send(p.StartConversation(service_id=SERVICE))
    client.receive('{"type":"server.conversation-created"}')
    assert client.state is p.State.ACTIVE and client.conversation_id is None
    assert "conversation_id" in client.violations_received()[0].description


def test_unknown_frames_while_active_change_nothing(active):
    active.client.receive('{"type":"server.conversation-something","conversation_id":"zz"}')
    assert active.client.state is p.State.ACTIVE and active.client.violations_received() == []
    assert active.client.conversation_id == "c" * 24


def test_reset_for_reconnect_allows_continue_on_a_new_socket(active):
    active.client.connection_closed(1006)
    active.client.reset_for_reconnect()
    active.client.send(p.ContinueConversation(conversation_id="c" * 24))
    assert active.client.state is p.State.INITIALISING


def test_table_covers_every_state_and_only_known_events():
    known = set(p.FRAME_TYPES) | {p.CONVERSATION_COMPLETED}
    assert set(p.TRANSITIONS) == set(p.State)
    for row in p.TRANSITIONS.values():
        assert set(row) <= known


def test_deliberately_malformed_frames_are_sent_as_is_until_closed():
    server = p.Conversation(p.Role.SERVER)
    server.send(p.UnknownFrame(frame_type="server.bogus", payload={"x": 1}))
    assert server.data_to_send() == ['{"type":"server.bogus","x":1}']
    server.connection_closed(1000)
    with pytest.raises(p.LocalProtocolError, match="closed"):
        server.send(p.UnknownFrame(frame_type="server.bogus"))
