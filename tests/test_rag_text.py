"""RAG's text rules (pgmind.rag), without the database or a model: milliseconds each.  The cases
that were SQL tests of the same rules (tests/test_search_rag.py before issue 36) are here unchanged."""
from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pgmind.errors import InvalidRequestError
from pgmind.rag import compose, query
from pgmind.rag.text import (estimate_tokens, expansion_headings, expansion_names, fill, language, sentence_units,
                             title_line)

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


def test_expansion_names():
    """The expansion's keyword list: its names in backticks, in order, once each; a code block's
    names are left out (made up); with no name, the whole expansion."""
    names = expansion_names
    assert names("Use `string_agg` or `array_to_string`; `string_agg` takes a delimiter.") == "string_agg array_to_string"
    assert names("Run `COMMENT ON`:\n```sql\nCOMMENT ON TABLE `employees` IS 'x';\n```\nthen `\\d+`.") == "COMMENT ON \\d+"
    assert names("用 `pg_size_pretty` 和 `pg_total_relation_size` 查看") == "pg_size_pretty pg_total_relation_size"
    assert names("VACUUM FULL returns the space.") == "VACUUM FULL returns the space."
    assert names("an unclosed ```block with `x`") == "an unclosed ```block with `x`"
    assert names(None) is None and names("") == ""


def test_expansion_headings():
    """The headings an expansion's names may be: without arguments, and without the last word."""
    heads = expansion_headings
    assert heads("Use `COALESCE(x, 0)`, `COMMENT ON` and `\\l`; `coalesce` again.") == [
        "coalesce", "comment on", "comment", "\\l"]
    assert heads("用 `pg_size_pretty` 查看") == ["pg_size_pretty"]
    assert heads("no names here") == [] and heads(None) == []
    assert heads(" ".join(f"`f{i}`" for i in range(40))) == [f"f{i}" for i in range(16)]   # the first 16 names


@given(texts)
def test_expansion_parsers_never_fail(text):
    names, heads = expansion_names(text), expansion_headings(text)
    assert isinstance(names, str) and len(heads) <= 32 and len(set(heads)) == len(heads)
    assert all(h == h.lower() and len(h) >= 2 for h in heads)


def test_prompt_templates_are_filled_once():
    """A template's {placeholders} are filled in one pass: a question that contains "{sources}" is not
    filled again."""
    assert fill("Q: {question} S: {sources} {other} {", {"question": "why {sources}?", "sources": "[1] x{topic}"}) \
        == "Q: why {sources}? S: [1] x{topic} {other} {"
    assert fill("", {"a": "b"}) == "" and fill("{topic}", {"topic": None}) == ""
    assert fill("第一行\n{question}\n", {"question": "索引?"}) == "第一行\n索引?\n"
    assert fill(None, {}) == ""


@given(texts, texts)
def test_a_filled_value_is_never_filled_again(template, value):
    out = fill(template, {"question": value})
    assert out == template.replace("{question}", value)


def test_language():
    assert language("如何创建索引") == "zh" and language("How? 。") == "en" and language("") == "en"


def test_title_line():
    assert title_line("# CREATE INDEX\nbody") == "# CREATE INDEX"
    assert title_line("text\n# not first") is None and title_line("# no newline") is None
    assert title_line("####### seven\nx") is None


def test_sentence_units():
    """Sentences end at . ! ? (a space after) and 。！？ (none needed); a line that ends no sentence
    stays with what follows it; units of two characters or fewer are dropped."""
    title, units = sentence_units("# 大熊猫\n大熊猫生活在四川。它们的毛是黑白的。大熊猫主要吃竹子，每天吃十几公斤。")
    assert title == "# 大熊猫" and units == ["大熊猫生活在四川。", "它们的毛是黑白的。", "大熊猫主要吃竹子，每天吃十几公斤。"]
    title, units = sentence_units("fillfactor (integer)\nThe fillfactor for an index is 90. It is a percentage.\nok")
    assert title is None and units == ["fillfactor (integer) The fillfactor for an index is 90.", "It is a percentage."]
    assert sentence_units("To build it without locks:\nCREATE INDEX CONCURRENTLY i ON t (c);\nx.")[1] == [
        "To build it without locks: CREATE INDEX CONCURRENTLY i ON t (c);"]
    assert sentence_units("a.\n\nb!") == (None, [])          # too short to be sentences


@given(texts)
def test_sentence_units_keep_the_text(chunk):
    """Every unit is made of the chunk's own words, in order."""
    title, units = sentence_units(chunk)
    body = re.sub(r"\s+", "", chunk if title is None else chunk[len(title) + 1:])
    assert "".join(re.sub(r"\s+", "", u) for u in units) in body or not units
    assert all(len(u) > 2 for u in units)


def test_estimate_tokens_is_the_chunkers():
    from pgmind.vectorizer import chunking
    assert estimate_tokens is chunking.estimate_tokens
    assert estimate_tokens("汉字") == 2 and estimate_tokens("abcd") == 1


def test_budget_keeps_the_first_and_numbers_in_order():
    hits = [{"chunk": "x" * 4000, "key": {"id": 1}}, {"chunk": "short", "key": {"id": 2}}]
    assert [s["n"] for s in compose.budget(hits, 10)] == [1]           # the first always fits
    assert [s["key"]["id"] for s in compose.budget(hits, 2000)] == [1, 2]
    assert compose.budget([], 100) == []


def _vectors(*rows):
    return np.array(rows, dtype=np.float32)


def test_sentences_are_taken_by_turns():
    """The question's best first, then the expansion's best, then the question's second…, shown in
    the chunk's own order; a chunk of no more sentences than wanted stays whole."""
    chunk = "# T\nalpha one. beta two. gamma three. delta four."
    p = compose.plan([chunk, "tiny chunk."], [2, 1])
    assert p.texts == ["alpha one.", "beta two.", "gamma three.", "delta four.", "tiny chunk."]
    units = _vectors([1, 0], [0, 1], [0.9, 0.1], [0.1, 0.9], [1, 1])
    q, e = [1, 0], [0, 1]
    text, shown = compose.render(p, units, _vectors(q, e))
    assert text == "[1] # T\nalpha one. … beta two.\n\n[2] tiny chunk.\n\n"
    assert [(x["n"], x["text"]) for x in shown] == [(1, "alpha one."), (1, "beta two."), (2, "tiny chunk.")]
    assert shown[0]["similarity"] == pytest.approx(1.0) and shown[1]["similarity"] == pytest.approx(0.0)
    # with no expansion the question's two best
    assert compose.render(p, units, _vectors(q))[0] == "[1] # T\nalpha one. … gamma three.\n\n[2] tiny chunk.\n\n"
    # no per-source count: every chunk whole, no model call needed
    whole = compose.plan([chunk], None)
    assert whole.texts == [] and compose.render(whole, None, None) == (f"[1] {chunk}\n\n", [])


def test_compose_declines_in_the_questions_language():
    s = {"decline_en": "no.", "decline_zh": "没有。", "prompt_en": "{sources}Q: {question} ({topic})",
         "prompt_zh": "{sources}问: {question}", "system_en": "", "system_zh": "be brief", "topic": None}
    assert compose.compose(s, "kb", "why?", [], "")["answer"] == "no."
    assert compose.compose(s, "kb", "为什么?", [], "")["answer"] == "没有。"
    out = compose.compose(s, "kb", "why?", [{"n": 1}], "[1] x\n\n")
    assert out["answered"] and out["messages"] == [{"role": "user", "content": "[1] x\n\nQ: why? (kb)"}]
    out = compose.compose(s, "kb", "为什么?", [{"n": 1}], "[1] x\n\n")
    assert out["messages"][0] == {"role": "system", "content": "be brief"}
    assert compose.compose({**s, "topic": ""}, "kb", "why?", [{"n": 1}], "")["messages"][-1]["content"] == "Q: why? ()"


def test_translation_requests_and_replies():
    s = {"language": "en", "translate_model": "m", "translate_prompt_en": "EN: {question}"}
    assert query.translate_request(s, "how?") is None                   # already in the language
    assert query.translate_request({**s, "translate_model": None}, "怎么?") is None
    call = query.translate_request(s, "怎么建索引?")
    assert call.messages == [{"role": "user", "content": "EN: 怎么建索引?"}] and call.options["temperature"] == 0
    assert query.read_translation(' "How to index?"\nextra', s, "q") == "How to index?"
    assert query.read_translation("怎么", s, "q") == "q" and query.read_translation(None, s, "q") == "q"
    with pytest.raises(InvalidRequestError):
        query.translate_request({**s, "language": "fr"}, "why")


def test_expansion_and_topic_requests():
    s = {"expand_model": "m", "expand_tokens": 64.0, "language": None, "topic": None,
         "expand_prompt_en": "{topic}: {question}", "expand_prompt_zh": "{topic}:{question}"}
    call = query.expand_request(s, "kb", "why?")
    assert call.messages[0]["content"] == "kb: why?" and call.options == {"max_tokens": 64, "temperature": 0}
    assert query.expand_request(s, "kb", "为什么").messages[0]["content"] == "kb:为什么"
    assert query.expand_request({**s, "expand_model": None}, "kb", "x") is None
    assert query.read_expansion("  ") is None and query.read_expansion(" x ") == "x"
    assert query.topic_request({"topic": None, "topic_model": "m"}, "x") is None


def test_topic_score_reads_log_odds():
    top = [{"token": " Yes", "logprob": -0.1}, {"token": "yes", "logprob": -3.0}, {"token": "No", "logprob": -2.5},
           {"token": "maybe", "logprob": -9.0}]
    score = query.read_topic_score([{"top_logprobs": top}], "m")
    assert score == pytest.approx(np.log(np.exp(-0.1) + np.exp(-3.0)) + 2.5)
    # a word missing is no likelier than the least likely one
    assert query.read_topic_score([{"top_logprobs": top[:1] + top[3:]}], "m") == pytest.approx(-0.1 + 9.0)
    for bad in (None, [], [{"top_logprobs": []}], [{}]):
        with pytest.raises(InvalidRequestError):
            query.read_topic_score(bad, "m")


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=8)
_keys = st.sampled_from(["language", "translate_model", "expand_model", "expand_tokens", "topic", "topic_model",
                         "prompt_en", "prompt_zh", "system_en", "decline_en", "expand_prompt_en", "translate_prompt_en",
                         "topic_prompt", "topic_system"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=8), st.text(max_size=50), _json)
def test_settings_of_any_shape_give_a_clear_error_or_a_request(cfg, question, logprobs):
    """The routes take settings from SQL, but anyone can call them directly: whatever the settings'
    shapes, the rules answer or raise InvalidRequestError (a 400 with a hint), never a Python error."""
    for step in (lambda: query.translate_request(cfg, question), lambda: query.expand_request(cfg, "kb", question),
                 lambda: query.topic_request(cfg, question), lambda: query.read_topic_score(logprobs, "m"),
                 lambda: compose.compose(cfg, "kb", question, [{"n": 1}], "[1] x\n\n")):
        try:
            step()
        except InvalidRequestError:
            pass
