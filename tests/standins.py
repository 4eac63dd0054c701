"""Stand-in provider servers for protocol tests — the one stand-in the project allows.

Each replays the response shapes that the provider documents (OpenAI's embeddings and chat
completions, DashScope's text-embedding and text-generation, clip-as-service's /post), so the
code that talks to remote providers is exercised over real HTTP.  They also misbehave on request
(slow, 429 with Retry-After, 500, garbage, 401) to test retries, timeouts and error reporting.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def fake_vector(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for a text (the replay has no model)."""
    raw = hashlib.sha256(text.encode()).digest() * (dim // 32 + 1)
    v = [b / 255.0 - 0.5 for b in raw[:dim]]
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


class StandIn:
    """A provider stand-in on 127.0.0.1:<random port>. ``script`` maps a path to a list of
    behaviours consumed one per request ('ok', 'slow', '429', '500', 'garbage', '401')."""

    def __init__(self, dim: int = 8):
        self.dim = dim
        self.requests: list[dict] = []
        self.script: dict[str, list[str]] = {}
        self.default: dict[str, str] = {}      # the behaviour when the script for a path is used up
        self.clip_scale = 1.0                  # clip-as-service's vectors are not unit length: >1 to show it
        self.chat_reply: str | None = None     # what the chat models answer (default: an echo of the prompt)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                owner.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                queue = owner.script.get(self.path)
                behaviour = queue.pop(0) if queue else owner.default.get(self.path, "ok")
                if behaviour == "slow":
                    time.sleep(3)
                if behaviour == "429":
                    return self._send(429, {"error": {"message": "Rate limit reached", "type": "requests"}},
                                      {"Retry-After": "0.2"})
                if behaviour == "500":
                    return self._send(500, {"error": {"message": "The server had an error", "type": "server_error"}})
                if behaviour == "401":
                    return self._send(401, {"error": {"message": "Incorrect API key provided",
                                                      "type": "invalid_request_error"}})
                if behaviour == "echo401":     # a provider that quotes the key it was sent
                    return self._send(401, {"error": {"message": "Incorrect API key provided: "
                                                                 + self.headers.get("Authorization", ""),
                                                      "type": "invalid_request_error"}})
                if behaviour == "refuse-long":   # 400 for a batch with a text over 200 characters
                    texts = body.get("input") if isinstance(body, dict) else None
                    if isinstance(texts, list) and any(len(t) > 200 for t in texts):
                        i = next(i for i, t in enumerate(texts) if len(t) > 200)
                        return self._send(400, {"error": {"message": f"input {i} is too long",
                                                          "type": "invalid_request_error"}})
                if behaviour == "garbage":
                    return self._send_raw(200, b"<html>not json</html>", "text/html")
                handler = {"/v1/embeddings": owner.openai_embeddings,
                           "/v1/chat/completions": owner.openai_chat,
                           "/api/v1/services/embeddings/text-embedding/text-embedding": owner.dashscope_embedding,
                           "/api/v1/services/aigc/text-generation/generation": owner.dashscope_generation,
                           "/api/v1/services/embeddings/multimodal-embedding/multimodal-embedding":
                               owner.dashscope_multimodal,
                           "/post": owner.clip_post}.get(self.path)
                if handler is None:
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if self.path == "/v1/chat/completions" and body.get("stream"):
                    return self._send_sse(owner.openai_chat_stream(body))
                if self.headers.get("X-DashScope-SSE") == "enable":
                    return self._send_sse(owner.dashscope_stream(body))
                self._send(200, handler(body))

            def _send(self, status, obj, headers=None):
                self._send_raw(status, json.dumps(obj).encode(), "application/json", headers)

            def _send_raw(self, status, data, ctype, headers=None):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _send_sse(self, events):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for e in events:
                    self.wfile.write(f"data: {json.dumps(e)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()

    # -- documented response shapes -----------------------------------------------------------
    def openai_embeddings(self, body):
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        return {"object": "list", "model": body["model"],
                "data": [{"object": "embedding", "index": i, "embedding": fake_vector(t, self.dim)}
                         for i, t in enumerate(texts)],
                "usage": {"prompt_tokens": 5 * len(texts), "total_tokens": 5 * len(texts)}}

    def openai_chat(self, body):
        last = body["messages"][-1]["content"]
        reply = f"echo: {last}" if self.chat_reply is None else self.chat_reply
        return {"id": "chatcmpl-123", "object": "chat.completion", "created": 1700000000, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}

    def openai_chat_stream(self, body):
        last = body["messages"][-1]["content"]
        base = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1700000000, "model": body["model"]}
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for piece in ("echo: ", last):
            yield {**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}}

    def dashscope_embedding(self, body):
        texts = body["input"]["texts"]
        return {"output": {"embeddings": [{"text_index": i, "embedding": fake_vector(t, self.dim)}
                                          for i, t in enumerate(texts)]},
                "usage": {"total_tokens": 4 * len(texts)}, "request_id": "b5ad6b5f-0000"}

    def dashscope_generation(self, body):
        last = body["input"]["messages"][-1]["content"]
        reply = f"回声: {last}" if self.chat_reply is None else self.chat_reply
        return {"output": {"choices": [{"finish_reason": "stop",
                                        "message": {"role": "assistant", "content": reply}}]},
                "usage": {"input_tokens": 11, "output_tokens": 4, "total_tokens": 15}, "request_id": "7a3c-0000"}

    def dashscope_stream(self, body):
        last = body["input"]["messages"][-1]["content"]
        for i, piece in enumerate(("回声: ", last)):
            yield {"output": {"choices": [{"finish_reason": "null", "message": {"role": "assistant", "content": piece}}]},
                   "usage": {"input_tokens": 11, "output_tokens": i + 1, "total_tokens": 12 + i}, "request_id": "r"}
        yield {"output": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": ""}}]},
               "usage": {"input_tokens": 11, "output_tokens": 4, "total_tokens": 15}, "request_id": "r"}

    def clip_post(self, body):
        """clip-as-service: {"data": [{"text": ...} | {"uri": ...}], "execEndpoint": "/"}."""
        return {"header": {"requestId": "abc", "status": None, "execEndpoint": "/"},
                "data": [{"id": f"doc{i}", "text": d.get("text"),
                          "embedding": [self.clip_scale * x
                                        for x in fake_vector(d.get("text") or d.get("uri") or d.get("blob") or "",
                                                             self.dim)]}
                         for i, d in enumerate(body.get("data") or [])]}

    def dashscope_multimodal(self, body):
        """DashScope multimodal-embedding: input.contents [{"text"} | {"image": URL or data URI}]."""
        contents = body["input"]["contents"]
        return {"output": {"embeddings": [{"index": i, "type": "image" if "image" in c else "text",
                                           "embedding": [2 * x for x in fake_vector(c.get("text") or c.get("image"),
                                                                                    self.dim)]}
                                          for i, c in enumerate(contents)]},
                "usage": {"input_tokens": 10, "image_count": sum("image" in c for c in contents)},
                "request_id": "mm-0000"}
