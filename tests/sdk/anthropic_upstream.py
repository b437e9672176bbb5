"""A minimal Anthropic Messages API upstream for the SDK tests (standard library only): fixed
answers in Anthropic's wire format, complete or streamed (`message_start` ...
`message_stop`), with a `get_weather` tool use when the request declares tools. It records
the headers of the last request so tests can check what flowgate sent."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TEXT = "The capital of France is Paris."
USAGE_IN, USAGE_OUT = 21, 9


def message(tools: bool) -> dict:
    content = (
        [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]
        if tools
        else [{"type": "text", "text": TEXT}]
    )
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-upstream",
        "content": content,
        "stop_reason": "tool_use" if tools else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT},
    }


def events(tools: bool):
    start = message(tools)
    start["content"], start["stop_reason"] = [], None
    start["usage"] = {"input_tokens": USAGE_IN, "output_tokens": 1}
    yield "message_start", {"type": "message_start", "message": start}
    if tools:
        block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in ('{"city":', ' "Paris"}')]
    else:
        block = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": part} for part in ("The capital", " of France", " is Paris.")]
    yield "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    yield "ping", {"type": "ping"}
    for delta in deltas:
        yield "content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield "message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if tools else "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": USAGE_OUT},
    }
    yield "message_stop", {"type": "message_stop"}


class Handler(BaseHTTPRequestHandler):
    last_headers: dict = {}
    last_body: dict = {}

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        Handler.last_headers = {key.lower(): value for key, value in self.headers.items()}
        Handler.last_body = body
        if self.path != "/v1/messages" or "max_tokens" not in body:
            payload = json.dumps({"type": "error", "error": {"type": "invalid_request_error", "message": "bad request"}}).encode()
            self.send_response(400)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        tools = bool(body.get("tools"))
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            for name, data in events(tools):
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
            self.close_connection = True
            return
        payload = json.dumps(message(tools)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def start() -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]
