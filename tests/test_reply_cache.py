"""Kept replies of query understanding (models/local/reply_cache.py): a greedy call the same caller
made before is answered without the model, and only then — another role, another model, other
options, a sampled or cancelled reply, a caller without the model's grant never get a kept reply."""
from __future__ import annotations

import asyncio
import time
import urllib.parse

import httpx
import pytest

from pgmind.models.hub import ModelHub
from pgmind.models.local.reply_cache import ReplyCache
from pgmind.models.spec import ModelSpec
from pgmind.models.types import CALLER, ChatResult

QWEN = ModelSpec("qwen-0.5b", "pgmind", "chat", "qwen2.5-coder-0.5b-instruct-q4_k_m", options={"backend": "llama.cpp"})
GREEDY = {"max_tokens": 64, "temperature": 0}
ASK = [{"role": "user", "content": "Translate into English: 怎样建索引?"}]


class Counting:
    """A chat provider that answers from a counter: each real call gives a new reply."""
    chat_features = frozenset({"logprobs"})

    def __init__(self):
        self.calls = 0

    async def chat(self, messages, options, cancel=None):
        self.calls += 1
        return ChatResult(f"reply {self.calls}", "stop", 12, 5)


@pytest.fixture
def hub(settings):
    h = ModelHub(settings)
    h.fake = Counting()
    h.provider = lambda spec: h.fake
    yield h
    asyncio.run(h.aclose())


def chat_as(hub, who: str, spec=QWEN, messages=ASK, options=GREEDY, reuse=True) -> ChatResult:
    async def run():
        CALLER.set(who)
        return await hub.chat(spec, messages, dict(options), None, reuse)
    return asyncio.run(run())


def test_the_same_callers_greedy_call_is_answered_once(hub):
    first = chat_as(hub, "alice")
    again = chat_as(hub, "alice")
    assert hub.fake.calls == 1 and again.content == first.content == "reply 1"
    # nothing was read or generated the second time
    assert (first.input_tokens, first.output_tokens) == (12, 5) and (again.input_tokens, again.output_tokens) == (0, 0)
    # a kept reply is a copy: changing what a caller got changes nothing for the next
    again.content = "changed"
    assert chat_as(hub, "alice").content == "reply 1"


def test_another_role_runs_the_model_itself(hub):
    """No role finds what another role's question left: the timing would tell it that the question
    was asked (docs/security.md)."""
    chat_as(hub, "alice")
    assert chat_as(hub, "bob").content == "reply 2" and hub.fake.calls == 2
    assert chat_as(hub, "bob").content == "reply 2" and chat_as(hub, "alice").content == "reply 1"


def test_what_keeps_calls_apart(hub):
    chat_as(hub, "alice")
    other_weights = ModelSpec("qwen-big", "pgmind", "chat", "qwen2.5-coder-1.5b-instruct-q4_k_m",
                              options={"backend": "llama.cpp"})
    alias = ModelSpec("translator", "pgmind", "chat", QWEN.model_name, options=dict(QWEN.options))
    assert chat_as(hub, "alice", spec=other_weights).content == "reply 2"
    assert chat_as(hub, "alice", options={**GREEDY, "max_tokens": 32}).content == "reply 3"
    assert chat_as(hub, "alice", messages=[{"role": "user", "content": "Translate into English: 怎样建表?"}]) \
        .content == "reply 4"
    assert chat_as(hub, "alice", spec=alias).content == "reply 1"      # the same model under another name
    # a sampled reply differs by design, and a call that did not ask for reuse runs the model
    assert chat_as(hub, "alice", options={**GREEDY, "temperature": 0.7}).content == "reply 5"
    assert chat_as(hub, "alice", options={**GREEDY, "temperature": 0.7}).content == "reply 6"
    assert chat_as(hub, "alice", reuse=False).content == "reply 7"
    remote = ModelSpec("oa", "openai", "chat", "gpt-4o-mini", url="http://127.0.0.1:1/v1")
    assert not ReplyCache.applies(remote, GREEDY) and ReplyCache.applies(QWEN, GREEDY)
    assert not ReplyCache.applies(QWEN, {**GREEDY, "tools": [{"type": "function"}]})


def test_only_whole_replies_are_kept_and_the_bound_holds():
    cache = ReplyCache(2)
    cache.put(b"c", ChatResult("half a rep", "cancelled", 3, 2))
    assert cache.get(b"c") is None
    for k in (b"1", b"2", b"3"):
        cache.put(k, ChatResult(k.decode()))
    assert cache.get(b"1") is None and cache.get(b"2").content == "2" and cache.get(b"3").content == "3"
    off = ReplyCache(0)
    off.put(b"1", ChatResult("x"))
    assert off.get(b"1") is None


def test_over_http_grants_and_logs_hold(server, token, installed, flush_call_log):
    """Through the model server's translation route, as SQL calls it: a role whose grant on the
    model was revoked is refused though its question is kept; another role's first call runs the
    model (its tokens are logged); a repeat is logged with no tokens."""
    from pgmind.db import connect
    with connect(installed, autocommit=True) as c:
        # (the packaged chat models are granted to public: a name of its own, granted to two roles)
        c.execute("delete from ai.model_registry where model_id = 'rc-qwen'")
        c.execute("insert into ai.model_registry (model_id, url, provider, model_type, model_name, options, owner) "
                  "select 'rc-qwen', url, provider, model_type, model_name, options, owner "
                  "from ai.model_registry where model_id = 'qwen-0.5b'")
        for r in ("rc_alice", "rc_bob"):
            c.execute(f"drop role if exists {r}")
            c.execute(f"create role {r}")
            c.execute("select ai.grant_model('rc-qwen', %s)", (r,))
        marker = c.execute("select coalesce(max(id), 0) from ai.call_log").fetchone()[0]
    settings = {"language": "en", "translate_model": "rc-qwen",
                "translate_prompt_en": "Translate this question into English. Reply with the English question only.\n\n"
                                       "{question}"}

    def translate(role: str) -> httpx.Response:
        return httpx.post(server + "/pgmind/v1/rag/translate", timeout=120,
                          json={"settings": settings, "question": "怎样查看表的大小?"},
                          headers={"Authorization": f"Bearer {token}", "X-Pgmind-Caller": urllib.parse.quote(role)})
    try:
        first = translate("rc_alice")
        assert first.status_code == 200 and first.json()["text"].isascii()
        assert translate("rc_alice").json() == first.json()
        assert translate("rc_bob").json() == first.json()
        with connect(installed, autocommit=True) as c:
            c.execute("select ai.revoke_model('rc-qwen', 'rc_alice')")
        # (a revoke reaches the server's grant cache by NOTIFY, within moments: docs/security.md)
        deadline = time.monotonic() + 30
        while (refused := translate("rc_alice")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert refused.status_code == 403, refused.text
        flush_call_log()
        with connect(installed, autocommit=True) as c:
            rows = c.execute("select caller, status, coalesce(output_tokens, 0) from ai.call_log "
                             "where id > %s and operation = 'chat' order by id", (marker,)).fetchall()
        # (the repeats while the revoke was on its way are logged as kept replies, no tokens)
        assert rows[:3] == [("rc_alice", "ok", rows[0][2]), ("rc_alice", "ok", 0), ("rc_bob", "ok", rows[2][2])]
        assert rows[0][2] > 0 and rows[2][2] > 0
    finally:
        with connect(installed, autocommit=True) as c:
            c.execute("delete from ai.model_registry where model_id = 'rc-qwen'")
            for r in ("rc_alice", "rc_bob"):
                c.execute(f"drop owned by {r} cascade")
                c.execute(f"drop role {r}")
