"""What every caller's request must be — texts, input types, chat messages and options — checked
once, by the model service, for every front end alike (SQL, the OpenAI and DashScope protocols,
the RAG routes, the Python client).  The chat vocabulary is OpenAI's (roles, content parts, tool
calls, tools, response_format): it is pgmind's one chat request, which every protocol translates
into and every provider translates out of."""
from __future__ import annotations

import json
import math

from ..errors import InvalidRequestError

INPUT_TYPES = ("query", "document")


def check_text(value, where: str, max_chars: int | None = None) -> str:
    """A text that can travel on: a str, valid UTF-8 (no lone surrogate, which JSON's \\ud800 escapes
    can carry and tokenizers and PostgreSQL choke on), and not over the length limit."""
    if not isinstance(value, str):
        raise InvalidRequestError(f"{where} is not a text", hint="send strings")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidRequestError(f"{where} has a lone surrogate (U+{ord(value[e.start]):04X}) at position {e.start}",
                                  hint="send valid Unicode: a surrogate pair, not half of one") from None
    if max_chars is not None and len(value) > max_chars:
        raise InvalidRequestError(f"{where} has {len(value)} characters; the limit is {max_chars}",
                                  hint="split it (a vectorizer chunks for you); PGMIND_MAX_INPUT_CHARS sets the limit")
    return value


def normalize_input_type(value: str | None) -> str:
    v = (value or "query").lower()
    if v in ("passage", "document", "doc", "search_document"):
        return "document"
    if v in ("query", "search_query"):
        return "query"
    raise InvalidRequestError(f"unknown input_type {value!r}", hint="input_type is 'query' or 'document'")



CHAT_OPTIONS = {"temperature": float, "top_p": float, "max_tokens": int, "seed": int, "stop": (str, list),
                "presence_penalty": float, "frequency_penalty": float, "repeat_penalty": float, "top_k": int,
                "tools": list, "tool_choice": (str, dict), "response_format": dict, "logprobs": bool,
                "top_logprobs": int, "logit_bias": dict}
# what not every provider can do: the hub checks them against the provider's chat_features
FEATURE_OPTIONS = {"tools": "tools", "tool_choice": "tools", "response_format": "response_format",
                   "logprobs": "logprobs", "top_logprobs": "logprobs", "logit_bias": "logit_bias"}


def check_chat_options(options: dict) -> dict:
    """Keep the generation options we understand, with the right types; reject wrong types and
    unknown options clearly (an option silently ignored is an answer the client did not ask for).
    A protocol's own names and fields (OpenAI's max_completion_tokens, functions, user, …) are its
    front end's to translate or drop before this (server/openai_api.py chat_options)."""
    out = {}
    unknown = sorted(k for k in options if k not in CHAT_OPTIONS and options[k] is not None)
    if unknown:
        raise InvalidRequestError(f"unsupported option {unknown[0]!r}"[:200],
                                  hint="the options are " + ", ".join(sorted(CHAT_OPTIONS)))
    for key, typ in CHAT_OPTIONS.items():
        if options.get(key) is None:
            continue
        value = options[key]
        if typ is bool and not isinstance(value, bool):
            raise InvalidRequestError(f"option {key} must be true or false, got {value!r}"[:200])
        if typ in (float, int) and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidRequestError(f"option {key} must be a number, got {value!r}"[:200])
        if typ is int and int(value) != value:
            raise InvalidRequestError(f"option {key} must be an integer, got {value!r}")
        if typ in (float, int) and not math.isfinite(value):
            raise InvalidRequestError(f"option {key} must be a finite number, got {value!r}")
        if isinstance(typ, tuple) and not isinstance(value, typ):
            raise InvalidRequestError(f"option {key} must be " + " or ".join(
                {str: "a text", list: "a list", dict: "an object"}[t] for t in typ) + f", got {type(value).__name__}")
        if typ in (list, dict) and not isinstance(value, typ):
            raise InvalidRequestError(f"option {key} must be a{'n object' if typ is dict else ' list'}"
                                      f", got {type(value).__name__}")
        out[key] = typ(value) if typ in (float, int) else value
    stop = out.get("stop")
    if stop is not None and not (isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 16
                                                           and all(isinstance(x, str) for x in stop))):
        raise InvalidRequestError(f"option stop must be a text or a list of up to 16 texts, got {stop!r}"[:200])
    if "max_tokens" in out and out["max_tokens"] < 1:
        raise InvalidRequestError("option max_tokens must be at least 1")
    if "top_logprobs" in out:
        if not 0 <= out["top_logprobs"] <= 20:
            raise InvalidRequestError("option top_logprobs must be between 0 and 20")
        if not out.get("logprobs"):
            raise InvalidRequestError("top_logprobs needs logprobs", hint='add "logprobs": true')
    if not out.get("logprobs"):
        out.pop("logprobs", None)
    if "tools" in out:
        out["tools"] = _check_tools(out["tools"])
        if not out["tools"]:
            del out["tools"]
    if "tool_choice" in out:
        out["tool_choice"] = _check_tool_choice(out["tool_choice"], out.get("tools") or [])
    if "response_format" in out:
        fmt = _check_response_format(out["response_format"])
        if fmt is None:
            del out["response_format"]
        else:
            out["response_format"] = fmt
    return out


def check_chat_features(spec, features: frozenset, messages: list[dict], options: dict) -> None:
    """A chat model asked only for what its provider can do (an option it would drop is a 400)."""
    for key, feature in FEATURE_OPTIONS.items():
        if key in options and feature not in features:
            raise InvalidRequestError(
                f"model {spec.model_id} (provider {spec.provider}) does not support {key}",
                hint="leave it out" + (" (logit_bias names OpenAI's token ids, which a local model does "
                                       "not have)" if key == "logit_bias" else ""))
    if "images" not in features and any(isinstance(m.get("content"), list) for m in messages):
        raise InvalidRequestError(f"model {spec.model_id} reads text only: it cannot see images or hear audio",
                                  hint="send text parts only; to ask about an image, put its text in "
                                       "(ai.image_text reads it, ai.image_labels names what it shows)")


def chat_call(model_id: str, body) -> tuple[list[dict], dict]:
    """ai.call_model's body for a chat model that has no URL of its own (a local one), read as an
    OpenAI chat request: "messages" and the options beside them; a text input, {"input": "..."}, is
    one user message.  The request's own fields (model, stream) are not generation options."""
    if not isinstance(body, dict):
        raise InvalidRequestError(f"model {model_id} takes a JSON object like OpenAI's chat request",
                                  hint=f'e.g. ai.call_model(\'{model_id}\', \'{{"messages": [{{"role": "user", '
                                       '"content": "你好"}], "max_tokens": 64}\'::jsonb), or a text')
    if body.get("stream"):
        raise InvalidRequestError("ai.call_model answers once: it cannot stream",
                                  hint='leave "stream" out (the OpenAI route /v1/chat/completions streams)')
    messages = body.get("messages")
    if messages is None and isinstance(body.get("input"), str):
        messages = [{"role": "user", "content": body["input"]}]
    if messages is None:
        raise InvalidRequestError(f'model {model_id} is a chat model: the request needs "messages"',
                                  hint='e.g. {"messages": [{"role": "user", "content": "你好"}]}, or pass '
                                       "a text, which is sent as one user message")
    options = {k: v for k, v in body.items() if k not in ("messages", "input", "model", "stream")}
    return check_messages(messages), check_chat_options(options)


def _check_tools(tools: list) -> list[dict]:
    out = []
    for i, t in enumerate(tools):
        f = t.get("function") if isinstance(t, dict) and t.get("type", "function") == "function" else None
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"].strip():
            raise InvalidRequestError(f"tool {i} is not a function with a name",
                                      hint='e.g. {"type": "function", "function": {"name": "get_weather", '
                                           '"parameters": {"type": "object", "properties": {}}}}')
        check_text(f["name"], f"tool {i}'s name", 256)
        if f.get("description") is not None and not isinstance(f["description"], str):
            raise InvalidRequestError(f"tool {f['name']!r}: description must be a text"[:200])
        params = f.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise InvalidRequestError(f"tool {f['name']!r}: parameters must be a JSON schema object"[:200])
        out.append({"type": "function", "function": {
            "name": f["name"], "description": f.get("description") or "",
            "parameters": params if params is not None else {"type": "object", "properties": {}}}})
    names = [t["function"]["name"] for t in out]
    if len(set(names)) != len(names):
        raise InvalidRequestError("two tools have the same name", hint="give each tool its own name")
    return out


def _check_tool_choice(choice, tools: list[dict]):
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequestError(f"tool_choice {choice!r} is not none, auto, required or a function"[:200])
        if choice == "required" and not tools:
            raise InvalidRequestError("tool_choice is required but there are no tools", hint="give tools")
        return choice
    name = (choice.get("function") or {}).get("name") if isinstance(choice.get("function"), dict) else None
    if name is None or name not in [t["function"]["name"] for t in tools]:
        raise InvalidRequestError(f"tool_choice names {name!r}, which is not among the tools"[:200],
                                  hint='e.g. {"type": "function", "function": {"name": "<one of the tools>"}}')
    return {"type": "function", "function": {"name": name}}


def _check_response_format(fmt: dict) -> dict | None:
    kind = fmt.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return {"type": "json_object", "schema": fmt["schema"]} if isinstance(fmt.get("schema"), dict) \
            else {"type": "json_object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise InvalidRequestError("response_format json_schema needs json_schema.schema, a JSON schema object",
                                      hint='e.g. {"type": "json_schema", "json_schema": {"name": "answer", '
                                           '"schema": {"type": "object", "properties": {}}}}')
        return {"type": "json_schema", "schema": spec["schema"]}
    raise InvalidRequestError(f"response_format type {kind!r} is not text, json_object or json_schema"[:200])


MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool")


def check_messages(messages) -> list[dict]:
    """OpenAI's message shapes, checked: ``developer`` becomes ``system``; an assistant turn may carry
    ``tool_calls`` (content null), a ``tool`` turn answers one; text parts are joined.  Parts that
    are not text (images, audio) stay as a list: only a provider that can take them accepts them."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("messages must be a non-empty list of {role, content} objects",
                                  hint='e.g. [{"role": "user", "content": "hi"}]')
    out = []
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict) or m.get("role") not in MESSAGE_ROLES:
            raise InvalidRequestError(f"message {i} has no valid role",
                                      hint="role is one of " + ", ".join(MESSAGE_ROLES))
        role = "system" if m["role"] == "developer" else m["role"]
        msg: dict = {"role": role}
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts
            parts = [p for p in content if isinstance(p, dict)]
            if len(parts) != len(content) or any(p.get("type") not in ("text", "image_url", "input_audio", "file")
                                                 for p in parts):
                raise InvalidRequestError(f"message {i} has a content part of an unknown type",
                                          hint="parts are {type: text, text: ...} (or image_url for a model that sees)")
            if all(p.get("type") == "text" for p in parts):
                content = "".join(p.get("text") if isinstance(p.get("text"), str) else "" for p in parts)
            else:
                for p in parts:
                    if p.get("type") == "text":
                        check_text(p.get("text"), f"message {i}")
                msg["content"] = parts
        if role == "assistant" and m.get("tool_calls"):
            msg["tool_calls"] = _check_tool_calls(m["tool_calls"], i)
            content = content if content is not None else ""
        if "content" not in msg:
            if not isinstance(content, str):
                raise InvalidRequestError(f"message {i} has no text content",
                                          hint='each message needs "content": "<text>"')
            msg["content"] = check_text(content, f"message {i}")
        if role == "tool":
            if m.get("tool_call_id") is not None:
                msg["tool_call_id"] = check_text(m["tool_call_id"], f"message {i}'s tool_call_id", 256)
        if isinstance(m.get("name"), str):
            msg["name"] = check_text(m["name"], f"message {i}'s name", 256)
        out.append(msg)
    return out


def _check_tool_calls(calls, i: int) -> list[dict]:
    if not isinstance(calls, list):
        raise InvalidRequestError(f"message {i}: tool_calls must be a list")
    out = []
    for c in calls:
        f = c.get("function") if isinstance(c, dict) else None
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise InvalidRequestError(f"message {i}: each tool call needs function.name and function.arguments")
        args = f.get("arguments", "{}")
        if not isinstance(args, str):
            args = json.dumps(args, ensure_ascii=False)
        out.append({"id": str(c.get("id") or ""), "type": "function",
                    "function": {"name": check_text(f["name"], f"message {i}'s tool name", 256),
                                 "arguments": check_text(args, f"message {i}'s tool arguments")}})
    return out
