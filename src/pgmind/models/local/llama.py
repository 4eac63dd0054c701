"""GGUF chat models through llama.cpp (llama-cpp-python). The model's own chat template formats
the messages. llama.cpp is not thread-safe: one generation at a time per model."""
from __future__ import annotations

import json
import os
import random
import threading
import uuid
from typing import Iterator

from ...errors import InputTooLongError, InvalidRequestError, ModelLoadError
from ..types import ChatDelta
from . import grammar_guard, llama_build
from .base import LocalChatModel
from .llama_prefix import MAX_BYTES, PrefixStates, cut_points

# before anything here imports llama_cpp: the build this CPU runs fastest ("amx", "avx512" or "portable")
LLAMA_BUILD = llama_build.select()


class LlamaCppChat(LocalChatModel):
    def __init__(self, gguf_path: str, *, context: int = 4096, threads: int | None = None,
                 prefix_cache_mb: int = MAX_BYTES >> 20):
        if not os.path.exists(gguf_path):
            raise ModelLoadError(f"GGUF file {gguf_path} does not exist",
                                 hint="check the model's options.path, or run scripts/setup.sh")
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelLoadError("llama-cpp-python is not installed",
                                 hint="pip install 'pgmind[local]'") from None
        self.context = context
        self._llm = Llama(model_path=gguf_path, n_ctx=context, n_threads=threads or os.cpu_count(),
                          verbose=False)
        self._lock = threading.Lock()
        self._formatter = None
        self._prefixes = PrefixStates(prefix_cache_mb << 20)     # prompt prefixes read once (0: none)
        # The cache may change no answer: that holds where llama.cpp's kernels compute a token's row
        # the same whatever else is in its batch, which is the CPU's and the build's business (on an
        # AMD EPYC with the portable build it did not).  Checked once here; where it fails, no cache.
        self.prefix_cache_exact = prefix_cache_mb <= 0 or self._prefix_cache_is_exact()
        if not self.prefix_cache_exact:
            import logging
            logging.getLogger(__name__).warning(
                "%s: a restored prompt prefix changes this CPU's answers; the prefix cache is off",
                os.path.basename(gguf_path))
            self._prefixes = PrefixStates(0)

    def _prefix_cache_is_exact(self) -> bool:
        """A prompt read after another that shares its beginning (restored from the kept prefix) and
        the same prompt read whole: the same tokens and logprobs?"""
        def probe(question: str):
            return self.chat([{"role": "system", "content": "Answer briefly."},
                              {"role": "user", "content": "Answer this question about PostgreSQL in one short "
                                                          f"sentence.\n\nQuestion: {question}"}],
                             {"max_tokens": 6, "temperature": 0, "logprobs": True, "top_logprobs": 3})
        size = self._prefixes.max_bytes
        exact = True
        for question in ("怎样查看表的大小", "how do I list all tables"):
            probe("what is a schema")                  # keeps the shared beginning
            restored = probe(question)
            self._prefixes = PrefixStates(size)
            whole = probe(question)
            exact = exact and (restored.content, restored.logprobs) == (whole.content, whole.logprobs)
        self._prefixes = PrefixStates(size)            # nothing of the check is kept
        return exact

    JUDGE_SYSTEM = "You judge search results. Answer only yes or no."
    JUDGE_PROMPT = "Question: {query}\n\nPassage: {passage}\n\nDoes the passage answer the question?"

    def relevance(self, query: str, passages: list[str], max_passage_tokens: int = 256) -> list[float]:
        """How likely each passage answers the query, by the model's own judgement: the probability
        of "yes" against "no" as its next token (no text is generated).  Chinese and English."""
        import numpy as np
        import llama_cpp
        yes = [self._single_token(w) for w in ("yes", "Yes")]
        no = [self._single_token(w) for w in ("no", "No")]
        out = []
        with self._lock:
            for passage in passages:
                ids = self._llm.tokenize(passage.encode("utf-8"), add_bos=False, special=False)
                if len(ids) > max_passage_tokens:   # the start of a chunk says what it is about
                    passage = self._llm.detokenize(ids[:max_passage_tokens]).decode("utf-8", "ignore")
                ask = self.JUDGE_PROMPT.format(query=query, passage=passage)
                prompt = self._format([{"role": "system", "content": self.JUDGE_SYSTEM},
                                       {"role": "user", "content": ask}])
                tokens = self._tokenize(prompt)
                # (the question's line is read once for all its passages)
                cuts = cut_points(self._tokenize, prompt, tokens, ask)
                done = self._prefixes.restore(self._llm, tokens, cuts)
                self._llm.eval(tokens[done:])
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._llm.ctx, -1),
                                               shape=(self._llm.n_vocab(),)).astype(np.float64)
                self._prefixes.keep(self._llm, tokens, cuts, done)
                y, n = np.logaddexp.reduce(logits[yes]), np.logaddexp.reduce(logits[no])
                out.append(float(1.0 / (1.0 + np.exp(n - y))))
        return out

    def _single_token(self, word: str) -> int:
        ids = self._llm.tokenize(word.encode("utf-8"), add_bos=False, special=False)
        return ids[0]

    def _format(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """The prompt as the model's own chat template writes it (ending where the answer starts);
        the template also says how to call the tools (Qwen2.5: <tool_call> JSON </tool_call>)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        if self._formatter is None:
            meta = self._llm.metadata
            template = meta.get("tokenizer.chat_template")
            if not template:
                raise ModelLoadError("this GGUF has no chat template")
            eos = self._llm.detokenize([self._llm.token_eos()]).decode("utf-8", "ignore")
            bos = self._llm.detokenize([self._llm.token_bos()]).decode("utf-8", "ignore")
            self._formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        try:
            return self._formatter(messages=messages, tools=tools).prompt
        except Exception as e:     # the template's raise_exception, or a shape it cannot render
            raise InvalidRequestError(f"the model's chat template cannot format these messages: {e}"[:300],
                                      hint="check the roles' order and the tool calls") from None

    def _tokenize(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self._tokenize(text))

    def _generate(self, tokens: list[int], done: int, max_tokens: int, stop: list[str], grammar,
                  sampling: dict, top_logprobs: int | None) -> Iterator[tuple[str, list[dict] | None, str | None]]:
        """(text, logprobs, finish_reason) per token, the last with its finish_reason.  Our own loop
        over llama.cpp's token generator, so each token's logprobs can be read from the logits that
        chose it (llama-cpp-python's completion API would need logits for every prompt position).
        Text that may be the start of a stop string is held back until it is not.  The model holds
        tokens[:done] already (a prefix restored by PrefixStates)."""
        import codecs
        import llama_cpp
        import numpy as np
        llm = self._llm
        seed = sampling.get("seed")
        # without a seed, the one llama-cpp-python's completion API uses (the model's own): the same
        # prompt gives the same answer, as it did before this loop replaced that API
        llm.set_seed(seed if seed is not None else random.Random(llm._seed).randint(0, 2 ** 32))
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        text, sent, pending, n = "", 0, [], 0
        vocab = llm._model.vocab
        for token in llm.generate(tokens[done:], reset=False, temp=sampling.get("temperature", 0.8), top_p=sampling.get("top_p", 0.95),
                                  top_k=sampling.get("top_k", 40), min_p=0.05,
                                  repeat_penalty=sampling.get("repeat_penalty", 1.0),
                                  frequency_penalty=sampling.get("frequency_penalty", 0.0),
                                  presence_penalty=sampling.get("presence_penalty", 0.0), grammar=grammar):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                break
            n += 1
            raw = llm.detokenize([token])
            if top_logprobs is not None:
                logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1),
                                               shape=(llm.n_vocab(),)).astype(np.float64)
                logp = logits - np.logaddexp.reduce(logits)
                best = np.argsort(-logp)[:top_logprobs] if top_logprobs else []
                piece_text = raw.decode("utf-8", "replace")
                pending.append({"token": piece_text, "logprob": float(logp[token]), "bytes": list(raw),
                                "top_logprobs": [{"token": (b := llm.detokenize([int(i)])).decode("utf-8", "replace"),
                                                  "logprob": float(logp[i]), "bytes": list(b)} for i in best]})
            text += decoder.decode(raw)
            cut = min((k for k in (text.find(s_, max(0, sent - len(s_))) for s_ in stop) if k >= 0), default=-1)
            if cut >= 0:
                yield text[sent:cut], pending or None, "stop"
                return
            if n >= max_tokens:
                break
            hold = max((_partial(text, s_) for s_ in stop), default=0)
            if len(text) - hold > sent:
                yield text[sent:len(text) - hold], pending or None, None
                sent, pending = len(text) - hold, []
        text += decoder.decode(b"", final=True)
        yield text[sent:], pending or None, "length" if n >= max_tokens else "stop"

    def stream(self, messages: list[dict], options: dict) -> Iterator[ChatDelta]:
        """Generation with what OpenAI's clients ask of it: tools (the template's tool-call format,
        parsed back into OpenAI's tool_calls; a required or named tool is forced by a grammar),
        response_format (a JSON grammar, from the schema when there is one), logprobs."""
        choice = options.get("tool_choice", "auto")
        tools = options.get("tools") if choice != "none" else None
        forced = None
        if tools and choice == "required":
            forced = tools
        elif tools and isinstance(choice, dict):
            forced = [t for t in tools if t["function"]["name"] == choice["function"]["name"]]
        fmt = None if forced else options.get("response_format")
        templated = _template_messages(messages, fmt)
        prompt = self._format(templated, tools)
        grammar = None
        if forced:        # the answer starts inside the call: the grammar allows only a call of these tools
            prompt += TOOL_OPEN + "\n"
            grammar = _grammar(_call_schema(forced), "tool parameters")
        elif fmt is not None:
            grammar = _grammar(fmt.get("schema"), "response_format schema")
        tokens = self._tokenize(prompt)
        last = templated[-1].get("content") if templated else None
        cuts = cut_points(self._tokenize, prompt, tokens, last if isinstance(last, str) else None)
        if len(tokens) >= self.context:
            raise InputTooLongError(f"the messages have {len(tokens)} tokens; the model's window is {self.context}",
                                    hint="shorten the messages or the retrieved context")
        max_tokens = min(options.get("max_tokens") or 512, self.context - len(tokens))
        kwargs = {k: options[k] for k in ("temperature", "top_p", "top_k", "seed", "presence_penalty",
                                          "frequency_penalty", "repeat_penalty") if k in options}
        kwargs.setdefault("temperature", 0.2)
        stop = options.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        top = options.get("top_logprobs") or 0
        want_logprobs = bool(options.get("logprobs"))
        parser = _ToolCallParser([t["function"]["name"] for t in tools] if tools and not forced else None)
        with self._lock:
            finish, text = "length", ""
            restored = self._prefixes.restore(self._llm, tokens, cuts)
            try:
                for piece, logprobs, done in self._generate(tokens, restored, max_tokens, stop, grammar, kwargs,
                                                            top if want_logprobs else None):
                    text += piece
                    if forced:
                        parser.hold(logprobs)
                    else:
                        out = parser.feed(piece, logprobs)
                        if out is not None:
                            yield out
                    if done:
                        finish = done
            finally:      # (also when the caller went away mid-answer)
                self._prefixes.keep(self._llm, tokens, cuts, restored)
            calls, rest, logprobs = parser.finish(text if forced else None)
            after_tool = messages[-1]["role"] == "tool"
            again = not forced and ((calls and all(_answered(c, messages) for c in calls))
                                    or (after_tool and not calls and parser.held))
        if again:
            # a small model that asks again for a call answered just before (or writes a broken
            # call right after a tool's result) would loop an agent forever: it answers from the
            # tool's result instead, without the tools (nothing of the first answer was sent: it
            # was held as a possible call)
            yield from self.stream(messages, {**options, "tool_choice": "none"})
            return
        if rest or logprobs:
            yield ChatDelta(rest, logprobs=logprobs)
        if calls:
            yield ChatDelta(tool_calls=calls)
            if finish == "stop":
                finish = "tool_calls"
        yield ChatDelta("", finish, len(tokens), self.count_tokens(text))


TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"


def _template_messages(messages: list[dict], fmt: dict | None) -> list[dict]:
    """Messages as the chat template reads them: a replayed tool call's arguments as an object (the
    template writes them with tojson); with a response_format, the system message asks for JSON
    (the grammar makes it JSON; the words make it the right JSON)."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            calls = []
            for c in m["tool_calls"]:
                try:
                    args = json.loads(c["function"]["arguments"] or "{}")
                except ValueError:
                    args = c["function"]["arguments"]
                calls.append({"type": "function", "function": {"name": c["function"]["name"], "arguments": args}})
            m["tool_calls"] = calls
        out.append(m)
    if fmt is not None:
        ask = "Answer with one JSON object and nothing else."
        if fmt.get("schema"):
            ask += " It must follow this JSON schema:\n" + json.dumps(fmt["schema"], ensure_ascii=False)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + ask}
        else:
            out.insert(0, {"role": "system", "content": ask})
    return out


def _call_schema(tools: list[dict]) -> dict:
    """The JSON schema of one call of one of ``tools``, in the template's shape {name, arguments};
    each tool's own $defs are lifted to the top, where their $refs point."""
    defs: dict = {}
    variants = []
    for t in tools:
        params = dict(t["function"]["parameters"])
        for key in ("$defs", "definitions"):
            defs.update(params.pop(key, None) or {})
        variants.append({"type": "object", "properties": {"name": {"const": t["function"]["name"]},
                                                          "arguments": params},
                         "required": ["name", "arguments"]})
    schema = variants[0] if len(variants) == 1 else {"anyOf": variants}
    return {**schema, "$defs": defs} if defs else schema


# a schema's counts become grammar repetitions, its patterns' {m,n} too: bounded (grammar_guard.py
# says where llama.cpp's parser breaks, and how far under that these are)
GRAMMAR_LIMITS = {key: grammar_guard.MAX_COUNT for key in grammar_guard.COUNT_KEYS}


def _grammar(schema: dict | None, what: str):
    """The llama.cpp grammar of a JSON schema (or of any JSON when there is none).  llama.cpp
    parses it natively when generation starts, in this process: the schema and the grammar text
    are bounded first, and the text is built once in a child process (grammar_guard.CHECKER), so
    a grammar the parser cannot build — or crashes on — is a 400 here, not a dead server."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar, json_schema_to_gbnf
    grammar_guard.check_schema(schema, what)
    if schema is None:
        text = JSON_GBNF
    else:
        try:
            text = json_schema_to_gbnf(json.dumps(schema))
        except Exception as e:      # (RecursionError included: a deep $ref chain)
            raise InvalidRequestError(f"the {what} cannot be turned into a grammar: {e}"[:300],
                                      hint="use plain JSON schema: types, properties, required, enum, "
                                           "arrays, $defs") from None
    grammar_guard.CHECKER.check(text, what)      # (check_gbnf's bounds, then the child)
    return LlamaGrammar.from_string(text, verbose=False)


def _chat_logprobs(lp: dict | None, top: int) -> list[dict] | None:
    """llama.cpp's completion logprobs in the chat API's shape."""
    if not lp or not lp.get("tokens"):
        return None
    out = []
    for token, logprob, alts in zip(lp["tokens"], lp["token_logprobs"], lp.get("top_logprobs") or []):
        ranked = sorted((alts or {}).items(), key=lambda kv: -kv[1])[:top]
        out.append({"token": token, "logprob": float(logprob), "bytes": list(token.encode("utf-8")),
                    "top_logprobs": [{"token": t, "logprob": float(v), "bytes": list(t.encode("utf-8"))}
                                     for t, v in ranked]})
    return out


class _ToolCallParser:
    """Streams the answer's text until a tool call starts (holding back what may be the start of
    the tag), keeps the calls, and turns them into OpenAI's tool_calls at the end.  Small models
    often write the call as bare or fenced JSON instead of the template's <tool_call> tags: an
    answer that starts with "{" or "```" is held to the end and read as calls if it is one.  Text
    that does not parse as a call of one of the tools is given back as text, not dropped."""

    def __init__(self, tool_names: list[str] | None):
        self.names = set(tool_names or ())
        self.text = ""
        self.sent = 0
        self.calls_at: int | None = None
        self.logprobs: list[dict] = []

    def hold(self, logprobs) -> None:
        self.logprobs += logprobs or []

    @property
    def held(self) -> bool:
        """Whether the whole answer was held back as a possible call written as JSON."""
        return bool(self.names) and self.sent == 0 and self.text.lstrip().startswith(("{", "```"))

    def feed(self, piece: str, logprobs) -> ChatDelta | None:
        self.text += piece
        self.logprobs += logprobs or []
        if not self.names:
            limit = len(self.text)
        else:
            head = self.text.lstrip()
            if self.sent == 0 and (head.startswith(("{", "```")) or "```".startswith(head)):
                return None                      # maybe a call written as JSON: decide at the end
            if self.calls_at is None and (k := self.text.find(TOOL_OPEN, max(0, self.sent - len(TOOL_OPEN)))) >= 0:
                self.calls_at = k
            limit = self.calls_at if self.calls_at is not None else len(self.text) - _partial(self.text, TOOL_OPEN)
        if limit <= self.sent:
            return None
        delta = ChatDelta(self.text[self.sent:limit], logprobs=self.logprobs or None)
        self.sent, self.logprobs = limit, []
        return delta

    def finish(self, forced_text: str | None) -> tuple[list[dict], str, list[dict] | None]:
        """(tool calls, text not yet sent, its logprobs)."""
        logprobs = self.logprobs or None
        if forced_text is not None:
            call = _parse_call(forced_text)
            return ([call], "", logprobs) if call else ([], forced_text, logprobs)
        rest = self.text[self.sent:]
        if not self.names:
            return [], rest, logprobs
        if self.calls_at is None:
            calls = self._json_calls(rest) if self.sent == 0 else []
            return (calls, "", logprobs) if calls else ([], rest, logprobs)
        calls, leftover = [], []
        for block in rest.split(TOOL_OPEN)[1:]:
            call = _parse_call(block.split(TOOL_CLOSE)[0])
            if call and call["function"]["name"] in self.names:
                calls.append(call)
            else:
                leftover.append(TOOL_OPEN + block)
        head = rest.split(TOOL_OPEN)[0]
        return calls, (head + "".join(leftover)).strip() if leftover or not calls else head.rstrip(), logprobs

    def _json_calls(self, text: str) -> list[dict]:
        body = text.strip()
        if body.startswith("```"):
            body = body.split("\n", 1)[1] if "\n" in body else ""
            body = body.rsplit("```", 1)[0]
        try:
            obj = json.loads(body)
        except ValueError:
            return []
        calls = [_parse_call(json.dumps(o)) for o in (obj if isinstance(obj, list) else [obj])]
        return calls if calls and all(c and c["function"]["name"] in self.names for c in calls) else []


def _answered(call: dict, messages: list[dict]) -> bool:
    """Whether the conversation already holds this call (same tool, same arguments) and its result."""
    answered = {m.get("tool_call_id") for m in messages if m["role"] == "tool"}
    for m in messages:
        for c in m.get("tool_calls") or []:
            if c["function"]["name"] == call["function"]["name"] and (c["id"] in answered or not c["id"]):
                try:
                    if json.loads(c["function"]["arguments"] or "{}") == json.loads(call["function"]["arguments"]):
                        return True
                except ValueError:
                    continue
    return False


def _partial(text: str, tag: str) -> int:
    """How many characters at the end of text may be the start of tag."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


def _parse_call(body: str) -> dict | None:
    try:
        obj = json.loads(body.strip())
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": obj["name"],
                         "arguments": args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)}}
