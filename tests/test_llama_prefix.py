"""Prompt prefixes read once (pgmind.models.local.llama_prefix): where a prompt is cut, and that an answer
after a prefix restored from the cache is bit for bit the answer without any cache."""
from __future__ import annotations

import pytest

from pgmind.models.local.llama_prefix import MAX_PREFIX, PrefixStates, cut_points


def words(text: str) -> list[str]:
    """A stand-in tokenizer: a token per word and per run of line breaks."""
    import re
    return re.findall(r"\n+|[^\s]+\s*|\s+", text)


def test_cuts_where_the_last_text_starts_and_after_its_first_line():
    prompt = "<s> system: be brief\nuser: Answer about PostgreSQL.\n\nQuestion: why\nassistant:"
    text = "Answer about PostgreSQL.\n\nQuestion: why"
    tokens = words(prompt)
    cuts = cut_points(words, prompt, tokens, text)
    assert [("".join(tokens[:n])) for n in cuts] == [
        "<s> system: be brief\nuser: ", "<s> system: be brief\nuser: Answer about PostgreSQL.\n\n"]


@pytest.mark.parametrize("text", [None, "", "not in the prompt"])
def test_no_cuts_without_the_last_text(text):
    prompt = "user: hello\nthere"
    assert cut_points(words, prompt, words(prompt), text) == []


def test_no_cut_inside_a_token_nor_at_the_end():
    prompt = "user: ab\ncd"
    tokens = ["user: a", "b\n", "cd"]          # a token spans where the text starts

    def tok(s):
        return {"user: ": ["user: "], "user: ab\n": ["user: a", "b\n"]}.get(s, [s])
    assert cut_points(tok, prompt, tokens, "ab\ncd") == [2]
    one_line = "user: hi"
    assert cut_points(words, one_line, words(one_line), "hi") == [1]
    assert cut_points(words, "hi", ["hi"], "hi") == []     # nothing before it, nothing left after it


def test_a_long_first_line_is_not_kept():
    text = "x " * (MAX_PREFIX + 10) + "\nquestion"
    prompt = "user: " + text
    assert cut_points(words, prompt, words(prompt), text) == [1]


def test_the_cache_drops_the_least_recently_used_past_its_size():
    states = PrefixStates(max_bytes=10)
    states._put((1,), b"aaaa")
    states._put((2,), b"bbbb")
    assert states._get((1,)) == b"aaaa"          # (1,) is now the most recent
    states._put((3,), b"cccc")
    assert states._get((2,)) is None and states._get((1,)) and states._get((3,))
    states._put((4,), b"x" * 11)                  # larger than the whole cache: not kept
    assert states._get((4,)) is None and states.stats()["bytes"] == 8
    assert PrefixStates(max_bytes=0)._put((5,), b"y") is None


@pytest.fixture(scope="module")
def gguf():
    from pgmind.config import load_settings
    from pgmind.models.local.assets import MODELS, gguf_path
    return str(gguf_path(MODELS["Qwen2.5-Coder-0.5B-Instruct-Q4_K_M"], load_settings().models_dir))


def chat(model, question: str) -> tuple[str, list[dict]]:
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "Answer this question about PostgreSQL in one short sentence.\n\n"
                                            f"Question: {question}"}]
    out = model.chat(messages, {"max_tokens": 12, "temperature": 0, "logprobs": True, "top_logprobs": 3})
    return out.content, out.logprobs


@pytest.mark.models
def test_answers_after_a_cached_prefix_are_the_uncached_answers(gguf):
    from pgmind.models.local.llama import LlamaCppChat
    cached = LlamaCppChat(gguf, context=1024, threads=2)
    bare = LlamaCppChat(gguf, context=1024, threads=2, prefix_cache_mb=0)
    questions = ["how do I list all tables", "怎样查看表的大小", "how do I list all tables"]
    first = [chat(cached, q) for q in questions]
    # (where this CPU's kernels give a token other bits when its prefix is restored, the model found
    # that at load and keeps no prefixes: the answers must be the uncached ones either way)
    exact = cached.prefix_cache_exact
    assert cached._prefixes.stats()["hits"] == (2 if exact else 0)   # the header and instruction line, read once
    assert bare._prefixes.stats()["entries"] == 0
    for q, got in zip(questions, first):
        assert chat(bare, q) == got                        # text and every logprob, bit for bit
    assert first[0] == first[2]
    # the reranker's judge reads the question's line once for all passages, with the same scores
    passages = ["\\dt lists tables in psql.", "VACUUM reclaims storage.", "pg_total_relation_size(oid)"]
    assert cached.relevance("how do I list all tables", passages) == bare.relevance("how do I list all tables", passages)
    assert cached._prefixes.stats()["hits"] >= (4 if exact else 0)
    # a caller that goes away mid-answer leaves nothing behind that changes the next answer
    stream = cached.stream([{"role": "user", "content": "Answer this question about PostgreSQL in one short sentence."
                                                        "\n\nQuestion: what is a tablespace"}], {"max_tokens": 30})
    next(stream)
    stream.close()
    assert chat(cached, "how do I list all tables") == first[0]


def test_each_caller_has_prefixes_of_its_own():
    """A prompt one database role sent must not come back faster for another that guesses it."""
    import contextvars
    from pgmind.models.types import CALLER
    states = PrefixStates(max_bytes=100)

    def as_role(role, fn):
        def run():
            CALLER.set(role)
            return fn()
        return contextvars.copy_context().run(run)
    as_role("alice", lambda: states._put(states._key([1, 2, 3], 2), b"s"))
    assert as_role("alice", lambda: states._get(states._key([1, 2, 9], 2))) == b"s"
    assert as_role("bob", lambda: states._get(states._key([1, 2, 3], 2))) is None


def test_local_models_run_in_their_callers_context():
    """The model server runs local chat models in worker threads: the caller goes with the call."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor
    from pgmind.models.providers.local import LocalProvider
    from pgmind.models.types import CALLER, ChatDelta, ChatResult
    from pgmind.models.spec import ModelSpec

    class Model:
        def chat(self, messages, options, cancel=None):
            return ChatResult(CALLER.get())

        def stream(self, messages, options):
            yield ChatDelta(CALLER.get(), "stop")

    class Hub:
        chat_executor = ThreadPoolExecutor(1)

        async def local(self, spec):
            return Model()

    provider = LocalProvider(ModelSpec("m", "pgmind", "chat", "x"), Hub())

    async def main():
        CALLER.set("alice")
        whole = await provider.chat([], {})
        streamed = [d.content async for d in provider.stream([], {})]
        return whole.content, streamed
    assert asyncio.run(main()) == ("alice", ["alice"])


def test_the_model_server_names_the_caller_of_each_call():
    """What keeps prefixes per caller: every model call the server makes runs as its caller's role
    (else its front end)."""
    import asyncio
    from pgmind.models.types import CALLER
    from pgmind.models.spec import ModelSpec
    from pgmind.server.service import Caller, ModelService

    class Log:
        def record(self, rec):
            pass
    service = ModelService(None, None, Log())
    spec = ModelSpec("m", "pgmind", "chat", "x")

    async def seen(caller):
        async with service._record(spec, "chat", caller, 1):
            return CALLER.get()
    assert asyncio.run(seen(Caller("alice", "sql"))) == "alice"
    assert asyncio.run(seen(Caller(None, "openai-api"))) == "openai-api"
