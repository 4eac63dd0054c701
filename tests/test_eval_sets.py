"""The question sets: each loads, answerable questions name pages and facts, and no tuning
question reappears in the held-out set (figures on test.jsonl count only if nothing was tuned on it);
and how retrieval is scored on them."""
from pathlib import Path

import pytest

from pgmind.evaluation import load_questions

EVAL = Path(__file__).resolve().parents[1] / "eval"
SETS = sorted(EVAL.glob("*.jsonl"))


def _norm(q: str) -> str:
    return "".join(ch for ch in q.lower() if ch.isalnum())


@pytest.mark.parametrize("path", SETS, ids=[p.name for p in SETS])
def test_a_set_is_well_formed(path):
    qs = load_questions(path)
    assert {q.lang for q in qs} == {"en", "zh"}
    assert any(not q.gold for q in qs), "no unanswerable question"
    for q in qs:
        assert bool(q.gold) == bool(q.facts), q.question          # answerable: pages and facts; else neither
        assert all(g.endswith(".html") for g in q.gold), q.question
    assert len({_norm(q.question) for q in qs}) == len(qs), "a question twice"


def test_no_tuning_question_is_in_the_held_out_set():
    held_out = {_norm(q.question) for q in load_questions(EVAL / "test.jsonl")}
    for path in SETS:
        if path.name != "test.jsonl":
            shared = [q.question for q in load_questions(path) if _norm(q.question) in held_out]
            assert not shared, f"{path.name} shares {shared} with test.jsonl"


def test_no_tuning_topic_is_in_the_held_out_set():
    """Nor the same task in other words: no tuning question's key fact is a held-out question's
    (dev.jsonl's pg_locks question predates the held-out set)."""
    held_out = {f.lower() for q in load_questions(EVAL / "test.jsonl") for f in q.facts}
    for path in SETS:
        if path.name != "test.jsonl":
            shared = {f.lower() for q in load_questions(path) for f in q.facts} & held_out
            assert shared <= ({"pg_locks"} if path.name == "dev.jsonl" else set()), f"{path.name}: {shared}"


def test_retrieval_is_scored_on_ten_pages():
    """evaluate_retrieval counts the first ten pages, not the pages of the first chunks: a search
    stand-in (the scoring is what is tested here) where three long pages fill 30 chunks and the
    right page is the tenth page."""
    from pgmind.client import Hit
    from pgmind.evaluation import Question, evaluate_retrieval

    class Pages:
        def search(self, name, query, *, k, mode, expand, chunks_per_source=None):
            if chunks_per_source == 1:
                return [Hit({"path": f"p{i}.html"}, 0, "", 1.0, 1.0, i, i) for i in range(1, k + 1)]
            return [Hit({"path": f"p{1 + i // 10}.html"}, i % 10, "", 1.0, 1.0, i, i) for i in range(k)]

    report = evaluate_retrieval(Pages(), "kb", [Question("q", "en", ("p10.html",), ("x",))], ["hybrid"])
    assert report["hybrid"]["all"]["recall@10"] == 1.0 and report["hybrid"]["all"]["mrr"] == 0.1


def test_bare_markers_are_a_fault_and_a_terse_answer_is_not():
    from pgmind.evaluation import answer_faults
    for bare in ("[1]", "[1] [1]", "[1].", "【1】。", "[1] 是", "  ", ""):
        assert "markers" in answer_faults("psql 列出所有表", bare, []), bare
    for terse in ("[1] \\dt", "\\l", "[2] `\\d+ t`", "用 COALESCE [1]"):
        assert "markers" not in answer_faults("psql 列出所有表", terse, []), terse


def test_an_echo_is_a_fault_and_a_restating_answer_is_not():
    from pgmind.evaluation import answer_faults
    for echo in ("估算表的行数 不用count [1]", "估算表的行数 不用count。", "估算表的行数 不用count\n\n估算表的行数 不用count 用 reltuples"):
        assert "echo" in answer_faults("估算表的行数 不用count", echo, []), echo
    for answer in ("估算表的行数 不用count: 查 pg_class.reltuples [1]", "估算表的行数 不用count? 用 `reltuples`"):
        assert "echo" not in answer_faults("估算表的行数 不用count", answer, []), answer
    assert "echo" not in answer_faults("获取当前时间的函数", "获取当前时间的函数是 `now()`。", [])
    assert "echo" not in answer_faults("psql 列出所有表", "psql 列出所有表: \\dt", [])
    # the question named again later in an explanation is no echo (seen on eval/dev3.jsonl)
    assert "echo" not in answer_faults("count rows per category", "To count rows per category, use `COUNT(*)` with "
                                       "`GROUP BY`. The sources [1] show how to count rows per category.", [])
    assert "echo" not in answer_faults("函数返回多行多列", "函数返回多行多列可以用 `RETURNS TABLE`:声明后函数返回多行多列。", [])
    assert "echo" in answer_faults("x y", "x y [1] x y [2]", []) and "echo" in answer_faults("x y", "[1] x y [2] x y", [])
    assert "echo" in answer_faults("x y", "[1] x y", [])          # a marker first hides no echo


def test_answers_in_the_questions_language():
    from pgmind.evaluation import in_language
    assert in_language("用 `pg_indexes` 视图查看表上的索引 [1]", "zh")
    for english in ("[1] EXPLAIN — show the execution plan of a statement", "[1] `\\dt`",
                    "```sql\nselect '表和字段'; -- 表的注释\n```"):
        assert not in_language(english, "zh"), english
        assert in_language(english, "en"), english
    assert not in_language("使用 COALESCE 函数把空值换成零 [1]", "en")


def test_a_pasted_chunk_is_a_fault_and_the_checked_answers_quote_is_not():
    """The answer shown ends with a verbatim source sentence on purpose (pgmind.rag.grounding's quote
    line): the answer above it is what must not be pasted."""
    from pgmind.evaluation import answer_faults
    chunk = ("CONCURRENTLY When this option is used, PostgreSQL will build the index without taking any locks that "
             "prevent concurrent inserts, updates, or deletes on the table.")
    assert "pasted" in answer_faults("How?", chunk, [chunk])
    assert "pasted" not in answer_faults("How?", f'Use `CREATE INDEX CONCURRENTLY` [1].\n\nSource [1]: "{chunk}"', [chunk])
    assert "pasted" not in answer_faults("怎么做?", f"用 `CREATE INDEX CONCURRENTLY` [1]。\n\n原文 [1]：“{chunk}”", [chunk])
    assert "pasted" in answer_faults("How?", f'{chunk}\n\nSource [1]: "{chunk}"', [chunk])
