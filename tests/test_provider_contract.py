"""The provider contract, for every class in PROVIDERS and for the example of docs/providers.md:
each runs against its stand-in (tests/standins.py replays OpenAI's, DashScope's and
clip-as-service's documented responses over real HTTP; the "pgmind" provider gets small models in
this process) through a ProviderContext — no database, no model server, no large model."""
from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pgmind.errors import InvalidRequestError, ProviderError, ProviderResponseError
from pgmind.models.local.base import LocalChatModel, LocalEmbeddingModel, LocalImageModel
from pgmind.models.local.batching import Unbatched
from pgmind.models.local.loader import ImageBatchModel
from pgmind.models.providers import PROVIDERS, Provider, ProviderContext, catalog_rows
from pgmind.models.providers.transport import Transport
from pgmind.models.spec import ModelSpec
from pgmind.models.types import ChatDelta, ChatResult, Embeddings
from pgmind.models.validation import FEATURE_OPTIONS
from standins import StandIn, fake_vector

DIM = 8
KEY = "sk-contract-key"
MODEL_TYPES = ("embedding", "chat", "rerank", "image_embedding")
DOC = Path(__file__).resolve().parent.parent / "docs" / "providers.md"


def _doc_example() -> type[Provider]:
    """The complete provider of docs/providers.md, as the page shows it (its first python block)."""
    code = re.search(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S).group(1)
    namespace: dict = {"__name__": "docs_providers_example"}
    exec(compile(code, str(DOC), "exec"), namespace)
    return next(v for v in namespace.values() if isinstance(v, type) and issubclass(v, Provider) and v is not Provider)


EXAMPLE = _doc_example()
CLASSES = {**PROVIDERS, EXAMPLE.name: EXAMPLE}

# Every provider: the model types it serves here, each with its URL under the stand-in (None: in
# this process).  A new provider needs its line; test_every_provider_has_a_case fails until it has.
CASES = {
    "pgmind": {"embedding": None, "chat": None, "rerank": None, "image_embedding": None},
    "openai": {"embedding": "/v1", "chat": "/v1"},
    "dashscope": {"embedding": "/api/v1", "chat": "/api/v1", "image_embedding": "/api/v1"},
    "clip": {"embedding": "", "image_embedding": ""},
    "other": {"embedding": "/post"},
    EXAMPLE.name: {"embedding": "/v1"},
}
CASE_IDS = [(p, t) for p, types in CASES.items() for t in types]
# what each operation needs: a provider that does not override it must refuse it with a 400
OPERATIONS = {"embed": lambda p: p.embed(["x"], "query", False), "embed_images": lambda p: p.embed_images([b"x"]),
              "classify_images": lambda p: p.classify_images([b"x"], 3), "rerank": lambda p: p.rerank("q", ["d"]),
              "chat": lambda p: p.chat([{"role": "user", "content": "x"}], {})}


# -- the stand-ins --------------------------------------------------------------------------------
class StandInEmbedder(LocalEmbeddingModel):
    dimensions = DIM

    def embed_batch(self, texts, input_type):
        return np.asarray([fake_vector(t, DIM) for t in texts], dtype=np.float32)


class StandInChat(LocalChatModel):
    def stream(self, messages, options):
        yield ChatDelta("echo: ")
        yield ChatDelta(messages[-1]["content"])
        yield ChatDelta("", "stop", 9, 3)


class StandInReranker:
    def score(self, query, documents):
        return [float(len(set(query.split()) & set(d.split()))) for d in documents]


class StandInImages(LocalImageModel):
    dimensions = DIM
    has_text_tower = True
    labels = ["disc", "square"]

    def embed_images(self, images):
        return np.asarray([fake_vector(f"{im.width}x{im.height}", DIM) for im in images], dtype=np.float32)

    def embed_texts(self, texts):
        return np.asarray([fake_vector(t, DIM) for t in texts], dtype=np.float32)

    def classify(self, images, k=5):
        return [[("disc", 0.9), ("square", 0.1)][:k] for _ in images]


async def local_standin(spec: ModelSpec):
    """What the hub's loader gives the "pgmind" provider: embedding and image models behind their
    batcher's interface, chat models and rerankers as they are."""
    return {"embedding": lambda: Unbatched(StandInEmbedder()), "chat": StandInChat, "rerank": StandInReranker,
            "image_embedding": lambda: Unbatched(ImageBatchModel(StandInImages()))}[spec.model_type]()


@pytest.fixture(scope="module")
def standin():
    s = StandIn(dim=DIM)
    yield s
    s.close()


@pytest.fixture(scope="module")
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def spec_for(provider: str, model_type: str, standin: StandIn) -> ModelSpec:
    path = CASES[provider][model_type]
    return ModelSpec(f"{provider}-{model_type}", provider, model_type, f"{provider}-model",
                     url=None if path is None else standin.url + path,
                     auth={} if path is None else {"author_type": "token"}, secret=None if path is None else KEY)


def run(settings, executor, provider: str, model_type: str, standin: StandIn, operation):
    """``operation(provider instance)`` in a fresh context (its own transport, closed after)."""
    async def main():
        context = ProviderContext(settings, Transport(), local_standin, executor)
        try:
            return await operation(CLASSES[provider](spec_for(provider, model_type, standin), context))
        finally:
            await context.transport.aclose()
    return asyncio.run(main())


def png() -> bytes:
    from pgmind.images.probe import probe_png
    return probe_png()


# -- the contract ---------------------------------------------------------------------------------
def test_every_provider_has_a_case():
    assert set(CASES) == set(CLASSES), "give each provider its model types and stand-in URL in CASES"


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_declares_itself(name):
    cls = CLASSES[name]
    assert cls.name == name and isinstance(cls.description, str) and cls.description.strip()
    assert cls.default_url is None or cls.default_url.startswith(("http://", "https://"))
    assert set(cls.call_paths) <= set(MODEL_TYPES) and all(p.startswith("/") for p in cls.call_paths.values())
    assert cls.chat_features <= set(FEATURE_OPTIONS.values()) | {"images"}
    assert isinstance(cls.probe, bool) and isinstance(cls.in_process, bool)
    assert set(CASES[name]) <= set(MODEL_TYPES)
    if name in PROVIDERS:
        assert (cls.name, cls.default_url, cls.probe, cls.in_process, cls.description) in catalog_rows()


@pytest.mark.parametrize("provider,model_type",
                         [c for c in CASE_IDS if c[1] in ("embedding", "image_embedding") and c[0] != "other"])
def test_embeds_texts_in_input_order(settings, executor, standin, provider, model_type):
    texts = ["first text", "第二段文字", "a third, longer text than the others"]
    result = run(settings, executor, provider, model_type, standin, lambda p: p.embed(texts, "document", False))
    assert isinstance(result, Embeddings) and result.vectors.dtype == np.float32
    assert result.vectors.shape == (3, DIM) and np.isfinite(result.vectors).all()
    assert isinstance(result.input_tokens, int) and result.input_tokens >= 0
    for v, t in zip(result.vectors, texts):    # each vector is its own text's, whatever the provider's scale
        assert float(v @ fake_vector(t, DIM)) / float(np.linalg.norm(v)) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("provider,model_type", [c for c in CASE_IDS if c[1] == "image_embedding"])
def test_image_models(settings, executor, standin, provider, model_type):
    async def operations(p):
        return await p.embed_images([png(), png()]), await p.has_text_tower(), await p.label_names()
    result, tower, labels = run(settings, executor, provider, model_type, standin, operations)
    assert result.vectors.shape == (2, DIM) and result.vectors.dtype == np.float32
    assert np.linalg.norm(result.vectors, axis=1) == pytest.approx(1.0, abs=1e-5)    # compared by cosine
    assert tower is True and all(isinstance(x, str) for x in labels)
    if labels:
        top = run(settings, executor, provider, model_type, standin, lambda p: p.classify_images([png()], 1))
        assert len(top) == 1 and top[0][0][0] in labels


@pytest.mark.parametrize("provider,model_type", [c for c in CASE_IDS if c[1] == "chat"])
def test_chats_and_streams_the_same_answer(settings, executor, standin, provider, model_type):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ping"}]

    async def both(p):
        return await p.chat(messages, {"max_tokens": 8}), [d async for d in p.stream(messages, {"max_tokens": 8})]
    whole, deltas = run(settings, executor, provider, model_type, standin, both)
    assert isinstance(whole, ChatResult) and "ping" in whole.content and whole.finish_reason == "stop"
    assert whole.input_tokens > 0 and whole.output_tokens > 0
    assert all(isinstance(d, ChatDelta) for d in deltas) and deltas[-1].finish_reason == "stop"
    assert all(d.finish_reason is None for d in deltas[:-1])
    assert "".join(d.content for d in deltas) == whole.content
    assert deltas[-1].input_tokens > 0 and deltas[-1].output_tokens > 0


@pytest.mark.parametrize("provider,model_type", [c for c in CASE_IDS if c[1] == "rerank"])
def test_reranks_in_document_order(settings, executor, standin, provider, model_type):
    docs = ["nothing here", "vacuum full locks the table", "vacuum"]
    scores = run(settings, executor, provider, model_type, standin, lambda p: p.rerank("vacuum full", docs))
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    assert scores[1] > scores[2] > scores[0]


# the body ai.call_model would send, per stand-in route
CALL_BODIES = {"/v1/embeddings": {"model": "m", "input": ["x"]},
               "/api/v1/services/embeddings/text-embedding/text-embedding": {"model": "m", "input": {"texts": ["x"]}},
               "/post": {"data": [{"text": "x"}], "execEndpoint": "/"}}


@pytest.mark.parametrize("provider,model_type",
                         [c for c in CASE_IDS if c[1] == "embedding" and CASES[c[0]][c[1]] is not None])
def test_call_sends_the_body_with_the_key(settings, executor, standin, provider, model_type):
    spec = spec_for(provider, model_type, standin)
    cls = CLASSES[provider]
    url = (cls(spec, None).base + cls.call_paths.get(model_type, ""))
    path = url[len(standin.url):]
    out = run(settings, executor, provider, model_type, standin, lambda p: p.call(CALL_BODIES[path], {"X-Trace": "7"}))
    assert isinstance(out, dict) and out
    sent = standin.requests[-1]
    assert sent["path"] == path and sent["body"] == CALL_BODIES[path]
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}" and sent["headers"]["X-Trace"] == "7"
    with pytest.raises(InvalidRequestError):
        run(settings, executor, provider, model_type, standin, lambda p: p.call(CALL_BODIES[path], {"X-Trace": 7}))


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_what_it_cannot_do_is_a_400(settings, executor, standin, name):
    """An operation a provider does not implement is a clear InvalidRequestError, never a guess."""
    cls = CLASSES[name]
    model_type = next(iter(CASES[name]))
    missing = [op for op in OPERATIONS if getattr(cls, op) is getattr(Provider, op)]
    for op in missing:
        with pytest.raises(InvalidRequestError, match="cannot"):
            run(settings, executor, name, model_type, standin, OPERATIONS[op])


@pytest.mark.parametrize("provider,model_type",
                         [c for c in CASE_IDS if CASES[c[0]][c[1]] is not None and c[0] != "other"])
def test_a_provider_error_is_reported_without_the_key(settings, executor, standin, provider, model_type):
    routes = ["/v1/embeddings", "/v1/chat/completions", "/post", *CALL_BODIES,
              "/api/v1/services/aigc/text-generation/generation",
              "/api/v1/services/embeddings/multimodal-embedding/multimodal-embedding"]
    operation = (lambda p: p.chat([{"role": "user", "content": "x"}], {})) if model_type == "chat" \
        else (lambda p: p.embed(["x"], "query", False))
    try:
        for behaviour, error in (("echo401", ProviderError), ("garbage", ProviderResponseError)):
            standin.script.update({r: [behaviour] for r in routes})
            with pytest.raises(error) as e:
                run(settings, executor, provider, model_type, standin, operation)
            assert KEY not in str(e.value) and KEY not in (e.value.hint or "")
            if behaviour == "echo401":
                assert e.value.status == 401 and not e.value.retryable
    finally:
        standin.script.clear()
