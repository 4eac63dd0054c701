"""Answers checked against their sources (pgmind.rag.grounding), without a database or a model.
The cases are the wrong answers a careful reader found (issue 37): a wrong value, a function that
does not exist, a citation of the wrong source — in English and in Chinese."""
from __future__ import annotations

from hypothesis import given, strategies as st

from pgmind.rag.grounding import claims, ground, split_sentences, why_declined

FILLFACTOR = ("# CREATE INDEX\nfillfactor (integer)\nThe fillfactor for an index is a percentage. B-trees use a "
              "default fillfactor of 90, but any integer value from 10 to 100 can be selected.")
HBA = ("# 21.1. The pg_hba.conf File\nThe pg_hba.conf file is read on start-up and when the main server process "
       "receives a SIGHUP signal.")
JSON = "# 9.16. JSON Functions\nThe operator ->> extracts a JSON object field as text: '{\"a\":1}'::json->>'a'."
TIMING = "# psql\n\\timing [ on | off ]\nWith a parameter, turns displaying of how long each SQL statement takes on or off."


def test_a_wrong_value_is_left_out_and_the_source_quoted():
    g = ground("What is the default fillfactor for a B-tree index?",
               "The default fillfactor for a B-tree index is 70, range 50–90 [1].", [FILLFACTOR, HBA])
    assert g.confidence == "not_confirmed" and "70" not in g.answer and "50" not in g.answer
    assert g.quote == {"n": 1, "text": "B-trees use a default fillfactor of 90, but any integer value from 10 to 100 "
                                       "can be selected."}
    assert 'Source [1]: "B-trees use a default fillfactor of 90' in g.answer
    assert {c.text for c in g.claims if not c.supported} == {"70", "50"}


def test_numbers_the_source_holds_are_supported():
    g = ground("What is the default fillfactor for a B-tree index?",
               "B-tree indexes default to a `fillfactor` of 90; any value from 10 to 100 works [1].", [FILLFACTOR])
    assert g.confidence == "supported" and g.removed == [] and g.answer.startswith("B-tree indexes default")
    assert {c.text: c.sources for c in g.claims} == {"fillfactor": [1], "90": [1], "10": [1], "100": [1]}
    assert claims("It is 90% full, 8 MB and 1.5 s.") and [c.text for c in claims("It is 90% full, 8 MB and 1.5 s.")] \
        == ["90", "8", "1.5"]
    assert [c.text for c in claims("PostgreSQL 15.2 uses pg_stat_io [2].")] == ["pg_stat_io", "15.2"]  # not [2]


def test_a_function_that_does_not_exist_is_left_out():
    g = ground("How do I get a field of a jsonb value as text?",
               "Use `jsonb_extract_text(data, 'name')` to get it as text [1].", [JSON])
    assert g.confidence == "not_confirmed" and "jsonb_extract_text" not in g.answer
    assert g.removed == ["Use `jsonb_extract_text(data, 'name')` to get it as text ."] or g.removed
    assert "->>" in g.answer                      # the quote holds the right answer


def test_a_citation_of_the_wrong_source_is_corrected():
    g = ground("How do I show each statement's time in psql?", "Turn on `\\timing` in psql [1].", [HBA, TIMING])
    assert g.citations_fixed == 1 and g.answer.startswith("Turn on `\\timing` in psql [2].")
    assert g.confidence == "supported"
    # a citation past the last source goes too
    g = ground("How do I show each statement's time in psql?", "Turn on `\\timing` [7].", [TIMING])
    assert g.answer.startswith("Turn on `\\timing` [1].") and g.citations_fixed == 1


def test_chinese_answers():
    g = ground("修改 pg_hba.conf 之后需要重启吗?", "不需要重启，发送 SIGHUP 信号让服务器重新读取 `pg_hba.conf` 即可 [1]。",
               [HBA])
    assert g.confidence == "supported" and g.answer.startswith("不需要重启")
    assert g.answer.endswith("原文 [1]：“The pg_hba.conf file is read on start-up and when the main server process "
                             "receives a SIGHUP signal.”")
    g = ground("B-tree 索引默认的 fillfactor 是多少?", "默认是 70 [1]。取值范围是 10 到 100 [1]。", [FILLFACTOR])
    assert g.confidence == "partly" and "70" not in g.answer and g.answer.startswith("取值范围是 10 到 100 [1]。")
    assert "已删去 1 句" in g.answer


def test_made_up_example_names_are_not_claims():
    found = {c.text for c in claims("Run `CREATE INDEX CONCURRENTLY idx_name ON my_table (col)` [1].")}
    assert "CONCURRENTLY" in found and not found & {"idx_name", "my_table", "col", "CREATE", "INDEX", "ON"}


def test_an_answer_with_nothing_to_check_is_partly_confirmed():
    g = ground("Why vacuum?", "It reclaims space and keeps statistics current [1].", [FILLFACTOR])
    assert g.confidence == "partly" and g.answer.startswith("It reclaims space")


def test_sentences():
    assert split_sentences("Use `\\timing` in psql. It shows each statement's time [1]. 第二句。[2]第三句") == [
        "Use `\\timing` in psql.", "It shows each statement's time [1].", "第二句。[2]", "第三句"]
    assert split_sentences("Run:\n```sql\nSELECT 1;\n```\nDone [1].") == ["Run:", "```sql\nSELECT 1;\n```", "Done [1]."]


@given(st.text(max_size=400), st.lists(st.text(max_size=200), max_size=4), st.text(max_size=60))
def test_never_fails(answer, sources, question):
    g = ground(question, answer, sources)
    assert g.confidence in ("supported", "partly", "not_confirmed") and isinstance(g.answer, str)
    assert all(1 <= n <= len(sources) for c in g.claims for n in c.sources)


def test_an_examples_own_names_are_not_claims_but_its_functions_are():
    found = {c.text for c in claims("```sql\nCOPY table_name FROM 'csv_file_path' WITH CSV HEADER;\n```")}
    assert found == {"COPY", "CSV", "HEADER"}
    assert {c.text for c in claims("```sql\nSELECT jsonb_extract_text(doc, 'a') FROM my_docs;\n```")} == \
        {"jsonb_extract_text"}


def test_an_intro_whose_code_was_taken_out_goes_with_it():
    g = ground("怎样查看表的大小?", "可以用 `pg_total_relation_size` 函数 [1]。具体命令如下:\n```sql\nSELECT pg_table_bytes('t');\n```",
               ["# 9.27\npg_total_relation_size ( regclass ) → bigint Computes the total disk space used."])
    assert g.answer.startswith("可以用 `pg_total_relation_size` 函数 [1]。") and "具体命令如下" not in g.answer
    assert len(g.removed) == 2 and g.confidence == "partly"


def test_what_is_left_must_confirm_something():
    """Glue left after the claims were taken out ("This returns the size.") is no answer."""
    g = ground("How big is a table?", "Use `pg_table_bytes()`. This returns the size of the table.",
               ["pg_total_relation_size ( regclass ) → bigint Computes the total disk space used."])
    assert g.confidence == "not_confirmed" and "This returns" not in g.answer and "pg_table_bytes" not in g.answer


def test_a_reply_to_a_prompt_is_checked_unless_the_knowledge_base_turned_it_off():
    from pgmind.rag.grounding import checked_reply
    prompt = {"sources": [{"chunk": FILLFACTOR}], "sentences": [], "ground": True}
    c = checked_reply("Default fillfactor?", "It is 70 [1].", prompt)
    assert c["confidence"] == "not_confirmed" and c["draft"] == "It is 70 [1]." and "70" not in c["answer"]
    assert checked_reply("Default fillfactor?", "It is 70 [1].", {**prompt, "ground": False}) == {"confidence": None}


def test_a_decline_says_why_in_the_questions_language():
    """Issue 38, item 4: a decline names what was measured — not silence."""
    low = {"reason": "below_threshold", "best": 0.31, "threshold": 0.38, "measure": "similarity",
           "nearest": [{"key": {"path": "functions-admin.html"}, "chunk_seq": 3, "similarity": 0.31}]}
    assert why_declined(low, "kill a slow query") == ("(declined: the nearest passage's similarity 0.310 is below "
                                                     "the threshold 0.380; nearest: functions-admin.html #3)")
    assert why_declined(low, "怎么杀掉慢查询") == "（已拒答：最相近段落的相似度 0.310 低于阈值 0.380；最相近：functions-admin.html #3）"
    off = {"reason": "off_topic", "topic_score": -3.1, "topic_threshold": 2.0}
    assert "topic score -3.10, below 2.00" in why_declined(off, "MySQL default port")
    assert why_declined({"reason": "nothing_found"}, "北京天气") == "（已拒答：没有检索到任何内容）"
    # answered, unknown or incomplete: nothing made up
    assert why_declined(None, "x") is None and why_declined({"reason": "later"}, "x") is None
    assert why_declined({"reason": "off_topic", "topic_score": None, "topic_threshold": 2.0}, "x") is None


_ANY = st.one_of(st.none(), st.text(max_size=20), st.floats(), st.integers(), st.lists(st.text(max_size=5), max_size=3),
                 st.lists(st.dictionaries(st.sampled_from(["key", "chunk_seq"]), st.one_of(
                     st.integers(), st.text(max_size=5), st.dictionaries(st.text(max_size=5), st.text(max_size=5)))),
                     max_size=3))


@given(st.dictionaries(st.sampled_from(["reason", "best", "threshold", "measure", "nearest", "topic_score",
                                        "topic_threshold", "other"]),
                       st.one_of(_ANY, st.sampled_from(["off_topic", "nothing_found", "below_threshold"]))),
       st.text(max_size=40))
def test_why_declined_never_fails(decline, question):
    assert why_declined(decline, question) is None or isinstance(why_declined(decline, question), str)


# -- quote-first answers (answer_style "quote"): the model chooses a labelled sentence ----------------
SENTENCES = [{"n": 1, "text": "B-trees use a default fillfactor of 90, but any integer value from 10 to 100 can be "
                              "selected.", "similarity": 0.6, "label": 1},
             {"n": 2, "text": "The pg_hba.conf file is read on start-up and when the main server process receives a "
                              "SIGHUP signal.", "similarity": 0.2, "label": 2}]


def test_quote_first_the_chosen_sentence_is_quoted_after_the_checked_words():
    from pgmind.rag.grounding import checked
    c = checked("What is the default fillfactor for a B-tree index?", "S1: The default is 90.",
                [FILLFACTOR, HBA], SENTENCES, "quote")
    assert c["confidence"] == "supported" and c["grounding"]["chosen"] == [1] and c["grounding"]["style"] == "quote"
    assert c["answer"] == ('The default is 90. [1]\n\nSource [1]: "B-trees use a default fillfactor of 90, but any '
                           'integer value from 10 to 100 can be selected."')


def test_quote_first_label_shapes_and_chinese():
    from pgmind.rag.grounding import quoted
    for reply in ("**S2**: On a SIGHUP.", "S2. On a SIGHUP.", "[S2] On a SIGHUP.", "On a SIGHUP (S2)."):
        g = quoted("When is pg_hba.conf read?", reply, [FILLFACTOR, HBA], SENTENCES)
        assert g.chosen == [2] and g.answer.split("\n")[0] in ("On a SIGHUP. [2]", "On a SIGHUP [2]."), reply
        assert 'Source [2]: "The pg_hba.conf file is read' in g.answer
    g = quoted("pg_hba.conf 什么时候读取?", "S2 启动时以及收到 SIGHUP 信号时读取。", [FILLFACTOR, HBA], SENTENCES)
    assert g.answer.startswith("启动时以及收到 SIGHUP 信号时读取。 [2]") and "原文 [2]：“The pg_hba.conf file" in g.answer
    assert g.confidence == "supported"


def test_quote_first_a_wrong_value_in_the_words_goes_the_quote_stays():
    from pgmind.rag.grounding import quoted
    g = quoted("What is the default fillfactor for a B-tree index?", "S1 The default is 70.", [FILLFACTOR, HBA],
               SENTENCES)
    assert "70" not in g.answer and g.confidence == "not_confirmed"
    assert 'Source [1]: "B-trees use a default fillfactor of 90' in g.answer


def test_quote_first_words_that_copy_the_sentence_and_labels_not_shown():
    from pgmind.rag.grounding import quoted
    g = quoted("What is the default fillfactor for a B-tree index?",
               "S1, B-trees use a default fillfactor of 90, but any integer value from 10 to 100 can be selected.",
               [FILLFACTOR, HBA], SENTENCES)
    assert g.answer == ('Source [1]: "B-trees use a default fillfactor of 90, but any integer value from 10 to 100 '
                        'can be selected."') and g.confidence == "partly"
    # a label it was not shown: checked as a free answer, the quote chosen by similarity
    g = quoted("What is the default fillfactor for a B-tree index?", "S9 It is 90 [1].", [FILLFACTOR, HBA], SENTENCES)
    assert g.chosen == [] and g.answer.startswith("It is 90 [1].") and "S9" not in g.answer


@given(st.text(max_size=300))
def test_quote_first_never_fails_on_any_reply(reply):
    from pgmind.rag.grounding import quoted
    g = quoted("What is the default fillfactor?", reply, [FILLFACTOR, HBA], SENTENCES)
    assert isinstance(g.answer, str) and g.confidence in ("supported", "partly", "not_confirmed")


def test_brief_answers_keep_the_first_answering_sentence_and_its_example():
    from pgmind.rag.grounding import checked
    draft = ("B-tree indexes default to a `fillfactor` of 90 [1]. The command is:\n```sql\nCREATE INDEX i ON t (c) "
             "WITH (fillfactor = 90);\n```\nThis makes the index 90 percent full, which is always best.")
    c = checked("What is the default fillfactor for a B-tree index?", draft, [FILLFACTOR, HBA], SENTENCES, "brief")
    assert c["answer"].startswith("B-tree indexes default to a `fillfactor` of 90 [1]. The command is:\n```sql")
    assert "always best" not in c["answer"] and c["draft"] == draft
    assert 'Source [1]: "B-trees use a default fillfactor of 90' in c["answer"]
    # an answer of one sentence stays as it is (with the quote)
    one = checked("What is the default fillfactor?", "It is 90 [1].", [FILLFACTOR], SENTENCES[:1], "brief")
    assert one["answer"].startswith("It is 90 [1].\n\nSource [1]")
