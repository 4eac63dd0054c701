"""Retrieval and answer quality of a knowledge base, on a JSONL file of questions.

Each line: {"question": str, "lang": "zh"|"en"|..., "gold": [source keys that answer it],
"facts": [short strings a right answer contains]}.  An empty ``gold`` marks a question whose answer
is not in the corpus: a right answer declines.

Retrieval (answerable questions only; results are deduplicated to source keys, in rank order):
recall@k = the share of questions with a gold key among the first k; MRR; nDCG@10 with binary
relevance.  Answers: the share of answerable questions answered with every fact, and the share of
unanswerable ones declined.
"""
from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

from .errors import InvalidRequestError
from .rag.grounding import QUOTE_LINE
from .rag.text import CITATION, CODE_BLOCK, CODE_SPAN

MODES = ("vector", "keyword", "hybrid", "hybrid+expand")   # +expand: the chat model's expansion too, as RAG searches


@dataclass(frozen=True)
class Question:
    question: str
    lang: str
    gold: tuple[str, ...]
    facts: tuple[str, ...]


def load_questions(path: str | Path) -> list[Question]:
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            q = Question(obj["question"], obj.get("lang", "?"), tuple(obj.get("gold", [])), tuple(obj.get("facts", [])))
        except (ValueError, KeyError, TypeError) as e:
            raise InvalidRequestError(f"{path}:{n}: not a question object ({e})",
                                      hint='each line: {"question": "...", "lang": "en", "gold": ["page.html"], '
                                           '"facts": ["..."]}') from None
        if not isinstance(q.question, str) or not q.question.strip():
            raise InvalidRequestError(f"{path}:{n}: empty question")
        out.append(q)
    if not out:
        raise InvalidRequestError(f"{path} has no questions")
    return out


def key_text(key: dict) -> str:
    """A source key as the questions file names it: the value of a one-column key, else its JSON."""
    return str(next(iter(key.values()))) if len(key) == 1 else json.dumps(key, sort_keys=True)


def ranked_sources(hits) -> list[str]:
    seen, out = set(), []
    for h in hits:
        k = key_text(h.key)
        if k not in seen:
            seen.add(k)
            out.append(k)
    return out


@dataclass
class RetrievalScores:
    n: int = 0
    hits: dict = field(default_factory=lambda: {1: 0, 5: 0, 10: 0})
    rr: float = 0.0
    ndcg: float = 0.0

    def add(self, ranked: list[str], gold: set[str]) -> None:
        self.n += 1
        first = next((i for i, k in enumerate(ranked) if k in gold), None)
        for k in self.hits:
            self.hits[k] += int(first is not None and first < k)
        self.rr += 1.0 / (first + 1) if first is not None else 0.0
        dcg = sum(1.0 / math.log2(i + 2) for i, k in enumerate(ranked[:10]) if k in gold)
        idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(gold), 10)))
        self.ndcg += dcg / idcg if idcg else 0.0

    def summary(self) -> dict:
        if not self.n:
            return {"n": 0}
        return {"n": self.n, **{f"recall@{k}": round(v / self.n, 3) for k, v in self.hits.items()},
                "mrr": round(self.rr / self.n, 3), "ndcg@10": round(self.ndcg / self.n, 3)}


RERANK_CANDIDATES = 5      # hybrid results a reranker re-scores (its cost grows with them: ~2.5 s each with the 1.5B on 2 cores)


def evaluate_retrieval(db, name: str, questions: list[Question], modes=MODES, rerank: str | None = None) -> dict:
    """{mode: {lang: scores, "all": scores}} for the answerable questions; with a rerank model,
    also "hybrid+rerank" (its top RERANK_CANDIDATES hybrid chunks re-scored), and from the same
    pass the relevance threshold that best separates answerable from unanswerable questions."""
    results: dict = {}
    for mode in modes:
        per: dict[str, RetrievalScores] = {}
        for q in questions:
            if not q.gold:
                continue
            # one chunk per source row: the first 10 results are 10 pages (30 chunks used to
            # hold as few as 3 pages when the best ones matched with many chunks each)
            ranked = ranked_sources(db.search(name, q.question, k=10, mode=mode.split("+")[0],
                                              expand=mode.endswith("+expand"), chunks_per_source=1))
            for lang in (q.lang, "all"):
                per.setdefault(lang, RetrievalScores()).add(ranked, set(q.gold))
        results[mode] = {lang: s.summary() for lang, s in sorted(per.items())}
    if rerank:
        per, seen = {}, []
        for q in questions:
            hits = db.search(name, q.question, k=RERANK_CANDIDATES, mode="hybrid", rerank=rerank,
                             candidates=RERANK_CANDIDATES, expand=True)
            seen.append((max((h.score for h in hits), default=0.0), bool(q.gold)))
            if q.gold:
                for lang in (q.lang, "all"):
                    per.setdefault(lang, RetrievalScores()).add(ranked_sources(hits)[:10], set(q.gold))
        results["hybrid+rerank"] = {lang: s.summary() for lang, s in sorted(per.items())}
        if any(a for _, a in seen) and not all(a for _, a in seen):
            results["rerank_threshold"] = best_cut(seen)
    return results




def answer_faults(question: str, answer: str, chunks: list[str]) -> list[str]:
    """What a reader would reject at a glance, checked mechanically: "markers" (nothing but citation
    markers and at most one other character), "echo" (the question repeated as the answer, with
    less than two letters or digits of its own after it, or before it comes again),
    "pasted" (most of the answer copied from a source: 120 characters or more in one run, making
    up over half of the answer)."""
    faults = []
    # what is left without the markers: nothing, or one character, or no letter or digit ("[1].",
    # "[1] [1]", "[1] 是"); a terse answer is not bare markers ("[1] \\dt", "\\l" in psql)
    left = re.sub(r"\s+", "", CITATION.sub("", answer))
    if len(left) < 2 or not re.search(r"[^\W_]", left):
        faults.append("markers")
    flat = " ".join(answer.split()).lower()
    q = " ".join(question.split()).lower()
    # the question with nothing of its own after it ("估算表的行数 不用count [1]"), or with nothing
    # before it comes again ("Q\n\nQ 用 reltuples"); an answer that begins by restating it is not one
    # ("获取当前时间的函数是 `now()`。", "psql 列出所有表: \\dt"), nor one that names it again later
    # in its explanation ("To count rows per category, use … GROUP BY … to count rows per category")
    # (markers left out: "[1] Q [1] Q" is an echo too)
    bare = " ".join(CITATION.sub(" ", answer).split()).lower()
    # (what the answer says of its own: all that follows the question, up to where it comes again)
    if q and bare.startswith(q) and len(re.findall(r"[^\W_]", bare[len(q):].split(q, 1)[0])) < 2:
        faults.append("echo")
    # (the checked answer's closing quote of a source is verbatim by design: what counts is the rest)
    own = " ".join(QUOTE_LINE.sub(" ", answer).split()).lower()
    if chunks and own:
        copied = _longest_copied(own, [" ".join(c.split()).lower() for c in chunks])
        if copied >= 120 and copied > len(own) / 2:
            faults.append("pasted")
    return faults


def in_language(answer: str, lang: str) -> bool:
    """Whether an answer is written in its question's language: a Chinese question's has four or
    more Chinese characters outside its code, an English one's fewer.  A reported measure, not a
    fault: a bare "[1] \\dt" answers "psql 列出所有表" rightly, but a Chinese reader wants the
    explanation in Chinese, not a pasted English title line."""
    han = len(re.findall(r"[\u4e00-\u9fff]", CODE_SPAN.sub(" ", CODE_BLOCK.sub(" ", answer))))
    return han >= 4 if lang == "zh" else han < 4


def _longest_copied(answer: str, sources: list[str]) -> int:
    """The longest run of the answer found verbatim in a source (characters)."""
    best = 0
    for src in sources:
        m = SequenceMatcher(None, answer, src, autojunk=False).find_longest_match(0, len(answer), 0, len(src))
        best = max(best, m.size)
    return best


def evaluate_answers(db, name: str, questions: list[Question], model: str | None = None) -> dict:
    """Answer every question with RAG; check facts, declines, the mechanical faults (answer_faults:
    an answer with a fault does not count as correct) and how many answers are in their question's
    language (in_language)."""
    per: dict[str, dict] = {}
    rows = []
    for q in questions:
        started = time.monotonic()
        a = db.ask(name, q.question, model=model)
        seconds = time.monotonic() - started
        faults = answer_faults(q.question, a.answer, [s.get("chunk", "") for s in a.sources]) if a.answered else []
        if q.gold:
            ok = a.answered and not faults and all(f.lower() in a.answer.lower() for f in q.facts)
            kind = "facts"
        else:
            ok = not a.answered
            kind = "declined"
        for lang in (q.lang, "all"):
            s = per.setdefault(lang, {"facts": [0, 0], "declined": [0, 0], "answerable_declined": [0, 0],
                                      "faults": [0, 0], "in_language": [0, 0]})
            s[kind][0] += int(ok)
            s[kind][1] += 1
            if q.gold:
                s["answerable_declined"][0] += int(not a.answered)
                s["answerable_declined"][1] += 1
            if a.answered:
                s["faults"][0] += int(bool(faults))
                s["faults"][1] += 1
                s["in_language"][0] += int(in_language(a.answer, q.lang))
                s["in_language"][1] += 1
        rows.append({"question": q.question, "ok": ok, "answered": a.answered, "answer": a.answer,
                     "faults": faults, "seconds": round(seconds, 1),
                     "sources": [key_text(s["key"]) for s in a.sources]})
    summary = {lang: {k: round(v[0] / v[1], 3) if v[1] else None for k, v in s.items()} for lang, s in per.items()}
    return {"summary": summary, "answers": rows}


def calibrate_threshold(db, name: str, questions: list[Question], k: int = 5, expand: bool = True) -> dict:
    """The RAG thresholds that best separate the answerable questions from the unanswerable ones.
    RAG declines a question the topic check finds off the knowledge base's topic (when it has a
    topic), then one whose best chunk of the hybrid top k is less similar than the threshold
    (searched as RAG searches: with query expansion unless the knowledge base turned it off).  So
    the topic threshold is cut first, on every question, and the similarity threshold on the
    questions that pass it.  Returns the similarity cut (threshold, the mistakes on each side, the
    similarities seen), under "topic" the topic cut, and under "total" the mistakes of both."""
    topic = [(db.topic_score(name, q.question), bool(q.gold)) for q in questions]
    out: dict = {}
    passing = questions
    if any(t is not None for t, _ in topic):
        out["topic"] = best_cut([(t, a) for t, a in topic if t is not None])
        passing = [q for q, (t, _) in zip(questions, topic) if t is None or t >= out["topic"]["threshold"]]
    seen = []
    for q in passing:
        hits = db.search(name, q.question, k=k, mode="hybrid", expand=expand)
        seen.append((max((h.similarity for h in hits if h.similarity is not None), default=0.0), bool(q.gold)))
    # (after the topic check every unanswerable question may be gone: a one-sided cut is fine then)
    out.update(best_cut(seen, require_both="topic" not in out))
    t = out.get("topic", {})
    out["total"] = {"answerable_declined": out["answerable_declined"] + t.get("answerable_declined", 0),
                    "unanswerable_answered": out["unanswerable_answered"],
                    "answerable": sum(1 for q in questions if q.gold),
                    "unanswerable": sum(1 for q in questions if not q.gold)}
    return out


def best_cut(seen: list[tuple[float, bool]], require_both: bool = True) -> dict:
    """The cut on a score (answer at or above it) with the fewest mistakes; seen: (score, answerable).
    With require_both false a set of one side is cut too: just below its lowest answerable score,
    or, with nothing answerable in it, no cut at all (threshold None)."""
    has_answerable = any(a for _, a in seen)
    if require_both and (not has_answerable or all(a for _, a in seen)):
        raise InvalidRequestError("calibrating needs answerable and unanswerable questions",
                                  hint='add questions with "gold": [] (answers not in the corpus)')

    def mistakes(t):
        if t is None:
            return 0, sum(1 for _, a in seen if not a)
        return (sum(1 for s, a in seen if a and s < t), sum(1 for s, a in seen if not a and s >= t))

    best = None
    if has_answerable:
        values = sorted({s for s, _ in seen})
        cuts = [values[0] - 0.01] + [(a + b) / 2 for a, b in zip(values, values[1:])] + [values[-1] + 0.01]
        # fewest mistakes; among equals, the lowest threshold (declining a real question costs more)
        best = min(cuts, key=lambda t: (sum(mistakes(t)), t))
    declined, answered = mistakes(best)
    return {"threshold": round(best, 4) if best is not None else None, "answerable_declined": declined,
            "unanswerable_answered": answered,
            "answerable": sum(1 for _, a in seen if a), "unanswerable": sum(1 for _, a in seen if not a),
            "similarities": {"answerable": sorted(round(s, 4) for s, a in seen if a),
                             "unanswerable": sorted(round(s, 4) for s, a in seen if not a)}}


def evaluate(db, name: str, questions: str | Path | list[Question], *, modes: list[str] | None = None,
             rerank: str | None = None, answers: bool = False, model: str | None = None,
             calibrate: bool = False) -> dict:
    """The report on a knowledge base: {"retrieval": evaluate_retrieval (``modes``, default all;
    with ``rerank`` also hybrid+rerank)}, with ``answers`` also "answers" (evaluate_answers, with the
    chat model ``model``), with ``calibrate`` also "threshold" (calibrate_threshold).  ``questions``:
    a JSONL file (load_questions) or the questions."""
    qs = questions if isinstance(questions, list) else load_questions(questions)
    modes = list(modes or MODES)
    for m in modes:
        if m not in MODES:
            raise InvalidRequestError(f"unknown mode {m!r}", hint="modes: " + ", ".join(MODES))
    report = {"retrieval": evaluate_retrieval(db, name, qs, modes, rerank)}
    if answers:
        report["answers"] = evaluate_answers(db, name, qs, model)
    if calibrate:
        report["threshold"] = calibrate_threshold(db, name, qs)
    return report


def report_lines(report: dict, name: str, rerank: str | None = None) -> list:
    """The report for a reader: rich tables and lines (markup), in print order.  ``name`` and
    ``rerank`` go into the ai.configure_rag statements that apply the thresholds found."""
    from rich.table import Table
    out: list = []
    table = Table("mode", "lang", "n", "recall@1", "recall@5", "recall@10", "MRR", "nDCG@10")
    for m, per in report["retrieval"].items():
        if m == "rerank_threshold":
            continue
        for lang, sc in per.items():
            table.add_row(m, lang, str(sc["n"]), *(str(sc[k]) for k in ("recall@1", "recall@5", "recall@10",
                                                                         "mrr", "ndcg@10")))
    out.append(table)
    c = report["retrieval"].get("rerank_threshold")
    if c:
        out.append(f"best rerank threshold: {c['threshold']} ({c['answerable_declined']} of {c['answerable']} "
                   f"answerable declined, {c['unanswerable_answered']} of {c['unanswerable']} unanswerable "
                   f"answered); use it with ai.configure_rag('{name}', '{{\"rerank\": \"{rerank}\", "
                   f"\"rerank_threshold\": {c['threshold']}}}')")
    if "answers" in report:
        t2 = Table("lang", "answers with the facts", "unanswerable declined", "answerable declined",
                   "faulty answers (pasted, echo, bare markers)", "answers in the question's language")
        for lang, sc in report["answers"]["summary"].items():
            t2.add_row(lang, str(sc["facts"]), str(sc["declined"]), str(sc["answerable_declined"]), str(sc["faults"]),
                       str(sc["in_language"]))
        out.append(t2)
    if "threshold" in report:
        c = report["threshold"]
        setting = {"threshold": c["threshold"]}
        if "topic" in c:
            t = c["topic"]
            setting["topic_threshold"] = t["threshold"]
            out.append(f"best topic threshold: {t['threshold']} ({t['answerable_declined']} of {t['answerable']} "
                       f"answerable questions declined, {t['unanswerable_answered']} of {t['unanswerable']} "
                       f"unanswerable answered)")
        tot = c["total"]
        out.append(f"best RAG threshold: {c['threshold']} ({tot['answerable_declined']} of {tot['answerable']} "
                   f"answerable questions declined, {tot['unanswerable_answered']} of {tot['unanswerable']} "
                   f"unanswerable answered in all); set it with ai.configure_rag('{name}', "
                   f"'{json.dumps(setting)}')")
    return out
