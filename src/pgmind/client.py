"""The Python API: a connection to a pgmind database and its model server.

    import pgmind
    db = pgmind.connect()                       # PGMIND_DSN, or the embedded cluster
    db.search("pg_docs", "如何创建 HNSW 索引", k=5)
    answer = db.ask("pg_docs", "How do I create an index without locking the table?")
    for piece in db.ask("pg_docs", "...", stream=True): print(piece, end="")
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterator

import httpx
import psycopg

from .config import Settings, load_settings
from .db import connect as db_connect, resolve_dsn
from .db.connection import from_sql_error
from .errors import ModelServerUnavailableError, PgmindError


@dataclass(frozen=True)
class Hit:
    key: dict
    chunk_seq: int
    chunk: str
    score: float
    similarity: float | None
    vector_rank: int | None
    keyword_rank: int | None


@dataclass
class Answer:
    answer: str
    sources: list[dict]
    answered: bool
    usage: dict | None = None
    model: str | None = None


class Pgmind:
    def __init__(self, dsn: str | None = None, settings: Settings | None = None):
        self.settings = settings or load_settings(dsn=dsn)
        self.conn = db_connect(resolve_dsn(self.settings), autocommit=True, application_name="pgmind client")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Pgmind":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _query(self, query: str, params) -> list:
        try:
            return self.conn.execute(query, params).fetchall()
        except psycopg.Error as e:
            raise from_sql_error(e) from None

    def search(self, name: str, query: str, *, k: int = 10, mode: str = "hybrid",
               filter: str | None = None, rerank: str | None = None, candidates: int | None = None,
               expand: bool = False, chunks_per_source: int | None = None) -> list[Hit]:
        rows = self._query("select key, chunk_seq, chunk, score, similarity, vector_rank, keyword_rank "
                           "from ai.search(%s, %s, k => %s, mode => %s, filter => %s, rerank => %s, "
                           "candidates => %s, expand => %s, chunks_per_source => %s)",
                           (name, query, k, mode, filter, rerank, candidates, expand, chunks_per_source))
        return [Hit(*r) for r in rows]

    def topic_score(self, name: str, question: str) -> float | None:
        """How surely the question is about the knowledge base's topic (log-odds; None without one)."""
        (row,) = self._query("select ai.topic_score(%s, %s)", (name, question))
        return row[0]

    def ask(self, name: str, question: str, *, k: int | None = None, model: str | None = None,
            threshold: float | None = None, filter: str | None = None, stream: bool = False):
        """The answer with its sources; with ``stream=True`` an iterator of text pieces whose
        ``.result`` (an Answer) is set when it ends."""
        if not stream:
            (row,) = self._query("select ai.rag(%s, %s, %s, %s, %s, %s)", (name, question, k, model, threshold, filter))
            r = row[0]
            return Answer(r["answer"], r["sources"], r["answered"], r.get("usage"), r.get("model"))
        (row,) = self._query("select ai.rag_prompt(%s, %s, %s, %s, %s, %s)",
                             (name, question, k, model, threshold, filter))
        return AnswerStream(self.settings, row[0], self._role_token())

    def _role_token(self) -> str:
        """This connection's role's own credential for the model server: the answer is written as that
        role, with its grants, and never as more (not the server's token)."""
        (row,) = self._query("select ai_internal._role_token()", None)
        if row[0] is None:
            self._query("select ai_internal._issue_role_tokens()", None)
            (row,) = self._query("select ai_internal._role_token()", None)
        return row[0]


class AnswerStream:
    """Iterates over the answer as the model writes it (from the model server, OpenAI protocol)."""

    def __init__(self, settings: Settings, prompt: dict, token: str):
        self.settings, self.prompt, self.token = settings, prompt, token
        self.result: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        p = self.prompt
        if not p["answered"]:
            self.result = Answer(p["answer"], [], False)
            yield p["answer"]
            return
        body = {"model": p["model"], "messages": p["messages"], "stream": True,
                "stream_options": {"include_usage": True}, **p["options"]}
        parts, usage = [], None
        try:
            with httpx.stream("POST", self.settings.effective_server_url + "/v1/chat/completions", json=body,
                              headers={"Authorization": f"Bearer {self.token}"},
                              timeout=httpx.Timeout(300, connect=5)) as r:
                if r.status_code >= 400:
                    r.read()
                    raise PgmindError(f"the model server answered {r.status_code}: {r.text[:300]}")
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise PgmindError(event["error"].get("message", "generation failed"),
                                          hint=event["error"].get("hint"))
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            parts.append(piece)
                            yield piece
        except httpx.TransportError:
            raise ModelServerUnavailableError(
                f"cannot reach the model server at {self.settings.effective_server_url}") from None
        self.result = Answer("".join(parts), p["sources"], True, usage, p["model"])


def connect(dsn: str | None = None) -> Pgmind:
    return Pgmind(dsn)
