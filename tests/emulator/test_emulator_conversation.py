"""Conversations with the emulator over loopback: turns, languages, events, tools, fillers, lifecycle."""

from __future__ import annotations

import pytest
from emulator_wire import WireClient, of_type, pieces

from amigo_lab.emulator import (
    DEFAULT_SERVICE_ID,
    AgentReply,
    AgentTurn,
    Emulator,
    ToolCall,
)

PIZZA_SERVICE_ID = "6650a1b2c3d4e5f6a7b8c9d1"


def check_pieces(frames: list[dict], message_id: str) -> list[dict]:
    """The message's pieces: numbered from 0, only the last one stopping."""
    group = pieces(frames, message_id)
    assert [p["sequence_number"] for p in group] == list(range(len(group)))
    assert [p["stop"] for p in group] == [False] * (len(group) - 1) + [True]
    return group


def test_a_new_conversation_begins_with_the_greeting_in_text_pieces(connect):
    client = connect()
    client.start()
    frames = client.interaction()
    complete = frames[-1]
    assert client.kinds(frames[:-1]) == ["new-message"] * (len(frames) - 1)
    group = check_pieces(frames, complete["message_id"])
    assert len(group) > 1 and all(len(p["message"].split()) <= 3 for p in group)  # a few words each
    assert all(p["transcript_alignment"] is None for p in group)
    assert "".join(p["message"] for p in group) == complete["full_message"]
    assert complete["full_message"].startswith("Hello, this is Riverside Clinic")
    assert complete["conversation_completed"] is False


def test_a_text_turn_follows_the_order_of_an_interaction(connect):
    client = connect()
    client.start()
    greeting = client.interaction()[-1]
    client.say("What are your opening hours?")
    frames = client.interaction()
    assert client.kinds(frames)[0] == "user-message-available"
    assert frames[0]["user_message"] == "What are your opening hours?"
    complete = frames[-1]
    check_pieces(frames, complete["message_id"])
    assert "eight in the morning" in complete["full_message"]
    assert complete["interaction_id"] != greeting["interaction_id"]
    assert frames[0]["message_id"] != complete["message_id"]


def test_user_turns_sent_while_one_streams_are_answered_in_order(connect):
    client = connect()
    client.start()
    client.say("where are you located")
    client.say("do you take my insurance")
    client.interaction()  # greeting
    first, second = client.interaction(), client.interaction()
    asked = [first[0]["user_message"], second[0]["user_message"]]
    assert asked == ["where are you located", "do you take my insurance"]
    assert "River Street" in first[-1]["full_message"] and "insurance" in second[-1]["full_message"]


def test_the_agent_answers_in_the_language_the_user_last_wrote(connect):
    client = connect()
    client.start()
    client.interaction()
    client.say("hola, ¿a qué hora abren?")
    assert client.interaction()[-1]["full_message"].startswith("Abrimos de lunes a viernes")
    client.say("quiero pedir una cita")  # the slow tool; the filler is Spanish too
    frames = client.interaction()
    assert "Un momento, estoy consultando la agenda." in [
        "".join(p["message"] for p in pieces(frames, mid))
        for mid in {f["message_id"] for f in of_type(frames, "server.new-message")}
    ]
    assert frames[-1]["full_message"].startswith("Le he reservado una cita")
    client.say("Bonjour")
    assert client.interaction()[-1]["full_message"].startswith("Bonjour !")
    client.say("me gustaría saber si tienen aparcamiento gratis")  # no intent: py3langid decides
    assert client.interaction()[-1]["full_message"].startswith("Perdone, no le he entendido")
    client.say("what time do you open")
    assert client.interaction()[-1]["full_message"].startswith("We are open")


def test_a_slow_tool_gets_a_filler_under_its_own_message_id(connect):
    client = connect("response_format=text&current_agent_action_type=.*")
    client.start()
    client.interaction()
    client.say("I would like to book an appointment")
    frames = client.interaction()
    kinds = client.kinds(frames)
    assert kinds[:3] == ["user-message-available", "current-agent-action", "current-agent-action"]
    actions = [f["action"] for f in of_type(frames, "server.current-agent-action")]
    assert [a["type"] for a in actions] == ["tool-call-started", "action-too-long", "tool-call-ended"]
    assert actions[0]["tool_name"] == "check_calendar"
    filler_text = actions[1]["filler"]
    answer_id = frames[-1]["message_id"]
    message_ids = list(dict.fromkeys(f["message_id"] for f in of_type(frames, "server.new-message")))
    assert len(message_ids) == 2 and message_ids[1] == answer_id
    filler = check_pieces(frames, message_ids[0])
    assert "".join(p["message"] for p in filler) == filler_text == "One moment while I check the calendar."
    # The filler ends before the tool's result, and the answer comes after it.
    ended = kinds.index("current-agent-action", kinds.index("new-message"))
    assert frames.index(filler[-1]) < ended < frames.index(pieces(frames, answer_id)[0])
    assert actions[2]["duration_ms"] >= 1900
    assert frames[-1]["full_message"].startswith("I have booked you")


def test_a_fast_tool_has_no_filler_and_the_filter_selects_actions(connect):
    client = connect("response_format=text&current_agent_action_type=^tool-call-ended$")
    client.start()
    client.interaction()
    client.say("I want to cancel my appointment")
    frames = client.interaction()
    actions = [f["action"] for f in of_type(frames, "server.current-agent-action")]
    assert len(actions) == 1 and actions[0]["type"] == "tool-call-ended"
    assert actions[0]["tool_name"] == "cancel_booking" and actions[0]["duration_ms"] >= 450
    assert len({f["message_id"] for f in of_type(frames, "server.new-message")}) == 1


def test_without_a_filter_no_action_is_sent_but_the_filler_still_is(connect):
    client = connect()
    client.start(PIZZA_SERVICE_ID)
    client.interaction()
    client.say("I would like a large pepperoni pizza")
    frames = client.interaction()
    assert not of_type(frames, "server.current-agent-action")
    assert len({f["message_id"] for f in of_type(frames, "server.new-message")}) == 2
    assert "pepperoni pizza is ordered" in frames[-1]["full_message"]


def test_an_external_event_is_attached_to_the_next_user_turn(connect):
    client = connect()
    client.start()
    client.interaction()
    client.say("cancel my appointment")  # its tool takes 0.5 s: the next two frames arrive meanwhile
    client.say("The lab results for the caller are ready", message_type="external-event")
    client.say("what are your hours")
    assert "I see that" not in client.interaction()[-1]["full_message"]  # the event waits for the next one
    frames = client.interaction()
    assert frames[0]["user_message"] == "what are your hours"
    reply = frames[-1]["full_message"]
    assert reply.startswith("I see that The lab results for the caller are ready.") and "We are open" in reply
    client.say("where are you located")
    assert "I see that" not in client.interaction()[-1]["full_message"]  # the buffer emptied


def test_an_external_event_alone_starts_an_interaction(connect):
    client = connect()
    client.start()
    client.interaction()
    client.say("the appointment moved to Friday", message_type="external-event")
    frames = client.interaction()
    assert not of_type(frames, "server.user-message-available")
    assert frames[-1]["full_message"] == "I see that the appointment moved to Friday."


def test_the_agent_ending_the_conversation_completes_it_and_closes_1000(connect):
    client = connect()
    conversation_id = client.start()
    client.interaction()
    client.say("thank you goodbye")
    complete = client.interaction()[-1]
    assert complete["conversation_completed"] is True
    assert complete["full_message"] == "Thank you for calling Riverside Clinic. Goodbye!"
    assert client.expect_close()[:2] == (1000, "conversation completed by the agent")
    again = connect()
    again.send("client.continue-conversation", conversation_id=conversation_id)
    assert again.expect_close()[0] == 4409


def test_close_connection_keeps_the_conversation_and_finish_ends_it(connect):
    first = connect()
    conversation_id = first.start()
    first.interaction()
    first.say("where are you located")
    first.interaction()
    first.send("client.close-connection")
    assert first.expect_close()[0] == 1000

    blocked = connect()
    blocked.send("client.start-conversation", service_id=DEFAULT_SERVICE_ID)
    code, reason, _ = blocked.expect_close()
    assert code == 4409 and conversation_id in reason

    second = connect()
    second.send("client.continue-conversation", conversation_id=conversation_id)
    frames = second.recv_until("server.conversation-continued")
    assert frames[-1]["conversation_id"] == conversation_id
    assert not second.quiet_for(0.3)  # no second greeting
    second.say("hola")
    assert second.interaction()[-1]["full_message"].startswith("¡Hola!")
    second.send("client.finish-conversation")
    assert second.expect_close()[0] == 1000

    third = connect()
    third.send("client.continue-conversation", conversation_id=conversation_id)
    assert third.expect_close()[0] == 4409
    fourth = connect()
    fourth.start()  # finishing freed the slot for a new conversation
    assert fourth.interaction()[-1]["type"] == "server.interaction-complete"


def test_continue_an_unknown_conversation_is_4404_and_another_users_is_4403():
    with Emulator(realtime=False, tokens={"token-a": "alice", "token-b": "bob"}) as emu:
        alice = WireClient(emu.port, token="token-a")
        conversation_id = alice.start()
        alice.send("client.close-connection")
        alice.expect_close()
        bob = WireClient(emu.port, token="token-b")
        bob.send("client.continue-conversation", conversation_id=conversation_id)
        assert bob.expect_close()[0] == 4403
        stranger = WireClient(emu.port, token="token-b")
        stranger.send("client.continue-conversation", conversation_id="0123456789abcdef01234567")
        code, reason, _ = stranger.expect_close()
        assert code == 4404 and "0123456789abcdef01234567" in reason
        for client in (alice, bob, stranger):
            client.close()


@pytest.mark.parametrize("fields", [{"service_id": "ffffffffffffffffffffffff"},
                                    {"service_id": DEFAULT_SERVICE_ID, "service_version_set_name": "nope"}],
                         ids=["unknown service", "unknown version set"])
def test_an_unknown_service_or_version_set_is_4404(connect, fields):
    client = connect()
    client.send("client.start-conversation", **fields)
    assert client.expect_close()[0] == 4404


def test_a_callable_agent_replaces_the_scripted_one():
    seen: list[AgentTurn] = []

    def agent(turn: AgentTurn):
        seen.append(turn)
        if "check" in turn.text:
            return AgentReply("All clear.", "eng", tool=("lookup", 0.2, None), end_conversation=False)
        return f"You said: {turn.text}"

    with Emulator(realtime=False, agent=agent) as emu:
        client = WireClient(emu.port, query="response_format=text&current_agent_action_type=tool")
        conversation_id = client.start()
        client.interaction()
        client.say("hello there")
        assert client.interaction()[-1]["full_message"] == "You said: hello there"
        client.say("please check")
        frames = client.interaction()
        assert [f["action"]["type"] for f in of_type(frames, "server.current-agent-action")] == [
            "tool-call-started", "tool-call-ended"]
        assert frames[-1]["full_message"] == "All clear."
        client.close()
    assert seen[0].conversation_id == conversation_id and seen[0].service.id == DEFAULT_SERVICE_ID
    assert seen[1].history == (("agent", "Hello, this is Riverside Clinic. How can I help you today?"),
                               ("user", "hello there"), ("agent", "You said: hello there"))
    assert isinstance(AgentReply("x", "eng", tool=("t", 2.0, "wait")).tool, ToolCall)
