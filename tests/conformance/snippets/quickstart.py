import websocket
import json
import base64

# 1. Create connection with authentication
ws_url = f"wss://api.amigo.ai/v1/{org_id}/conversation/converse_realtime?response_format=voice&audio_format=pcm"
headers = {"Sec-WebSocket-Protocol": f"bearer.authorization.amigo.ai.{auth_token}"}
ws = websocket.WebSocketApp(ws_url,
                            header=headers,
                            on_open=on_open,
                            on_message=on_message,
                            on_error=on_error,
                            on_close=on_close)

def on_open(ws):
    # 2. Start conversation
    ws.send(json.dumps({
        "type": "client.start-conversation",
        "service_id": "your-service-id",
        "service_version_set_name": "release"
    }))

def on_message(ws, message):
    # 3. Handle responses
    msg = json.loads(message)
    if msg["type"] == "server.conversation-created":
        print(f"Ready! ID: {msg['conversation_id']}")
        # 4. Send a message
        ws.send(json.dumps({
            "type": "client.new-text-message",
            # >>> The stored copy of the page ends inside the string above, at '"client.new'. The rest of this
            # >>> statement mirrors the JavaScript tab's step 4, and run_forever() is what WebSocketApp needs.
            "text": "Hello, how can you help me?",
            "message_type": "user-message"
        }))

ws.run_forever()
