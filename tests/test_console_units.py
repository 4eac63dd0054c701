"""The console's small parts without the stack: sessions and their expiry, the sign-in limit, the
CSRF origin rule, both languages complete, hit marking that builds no markup, feedback → eval lines,
and the vendored htmx matching its recorded checksum."""
from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request

from pgmind.console import csrf, i18n
from pgmind.console.pages.ask import eval_line
from pgmind.console.pages.search import marked, terms
from pgmind.console.sessions import IDLE_SECONDS, MAX_SECONDS, SessionStore, SignInLimiter

VENDOR = Path(__file__).parent.parent / "src/pgmind/console/static/vendor"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def request(headers: dict[str, str], host: str = "127.0.0.1:8765") -> Request:
    raw = [(b"host", host.encode())] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "scheme": "http", "path": "/console/x", "headers": raw,
                    "query_string": b"", "server": ("127.0.0.1", 8765)})


def test_sessions_expire_when_idle_and_at_most_after_the_maximum():
    clock = Clock()
    store = SessionStore(clock)
    s = store.create("alice", "d" * 64)
    assert store.get(s.id) is s and len(s.id) >= 40 and s.csrf != s.id
    clock.now += IDLE_SECONDS - 1
    assert store.get(s.id) is s              # used: the idle clock starts again
    clock.now += IDLE_SECONDS + 1
    assert store.get(s.id) is None
    s2 = store.create("alice", "d" * 64)
    for _ in range(MAX_SECONDS // (IDLE_SECONDS // 2) + 1):
        clock.now += IDLE_SECONDS // 2
        store.get(s2.id)
    assert store.get(s2.id) is None          # however busy
    s3 = store.create("bob", "e" * 64)
    store.delete(s3.id)
    assert store.get(s3.id) is None and store.get(None) is None and store.get("forged") is None


def test_sign_in_limit_per_client():
    clock = Clock()
    limiter = SignInLimiter(attempts=3, window=60, clock=clock)
    for _ in range(3):
        assert limiter.allowed("1.2.3.4")
        limiter.failed("1.2.3.4")
    assert not limiter.allowed("1.2.3.4") and limiter.allowed("5.6.7.8")
    assert 1 <= limiter.retry_after("1.2.3.4") <= 61
    clock.now += 61
    assert limiter.allowed("1.2.3.4")


def test_origin_rule():
    assert csrf.same_origin(request({"origin": "http://127.0.0.1:8765"}))
    assert not csrf.same_origin(request({"origin": "http://evil.example"}))
    assert not csrf.same_origin(request({"origin": "null"}))
    assert not csrf.same_origin(request({"referer": "http://127.0.0.1:9999/console/kbs"}))
    assert csrf.same_origin(request({"referer": "http://127.0.0.1:8765/console/kbs"}))
    assert csrf.same_origin(request({}))       # (no browser: the token decides)
    assert csrf.token_matches("abc", "abc") and not csrf.token_matches("abc", "abd")
    assert not csrf.token_matches("", "") and not csrf.token_matches("abc", None)


def test_every_string_in_both_languages():
    for key, (en, zh) in i18n.MESSAGES.items():
        assert en.strip() and zh.strip(), key
        assert set(__import__("re").findall(r"\{\w+\}", en)) == set(__import__("re").findall(r"\{\w+\}", zh)), key
    assert i18n.translator("zh")("signin") == "登录" and i18n.translator("en")("signin") == "Sign in"


def test_language_from_cookie_then_browser():
    def lang(headers):
        return i18n.language(request(headers))
    assert lang({"accept-language": "zh-CN,zh;q=0.9,en;q=0.8"}) == "zh"
    assert lang({"accept-language": "en-GB,en;q=0.9"}) == "en"
    assert lang({"accept-language": "fr-FR"}) == "en"
    assert lang({"accept-language": "zh-CN", "cookie": "pgmind_lang=en"}) == "en"
    assert lang({"cookie": "pgmind_lang=xx"}) == "en"


def test_marking_keeps_text_as_text():
    pieces = marked("<b>Panda</b> eats bamboo 大熊猫", terms("panda 大熊猫"))
    assert "".join(p for p, _ in pieces) == "<b>Panda</b> eats bamboo 大熊猫"
    assert [p for p, hit in pieces if hit] == ["Panda", "大熊猫"]
    assert marked("abc", []) == [("abc", False)]


def test_feedback_as_eval_lines():
    base = {"question": "q", "answer": "a", "lang": "en", "sources": ["p1", "p2"], "correction": None}
    assert eval_line({**base, "rating": 1, "answered": True})["gold"] == ["p1", "p2"]
    assert eval_line({**base, "rating": 1, "answered": False})["gold"] == []
    assert eval_line({**base, "rating": -1, "answered": True}) is None
    line = eval_line({**base, "rating": -1, "answered": True, "correction": "b"})
    assert line == {"question": "q", "lang": "en", "gold": ["p1", "p2"], "facts": [], "answer": "b"}


def test_vendored_htmx_is_the_recorded_file():
    recorded = (VENDOR / "VERSIONS.txt").read_text()
    digest = hashlib.sha256((VENDOR / "htmx-2.0.11.min.js").read_bytes()).hexdigest()
    assert f"htmx-2.0.11.min.js sha256 {digest}" in recorded
    assert (VENDOR / "htmx-LICENSE.txt").read_text().startswith("Zero-Clause BSD")


def test_session_store_ends_every_session_of_a_key():
    store = SessionStore(Clock())
    a, b = store.create("alice", "k" * 64), store.create("alice", "k" * 64)
    other = store.create("bob", "o" * 64)
    assert store.delete_key("k" * 64) == 2
    assert store.get(a.id) is None and store.get(b.id) is None and store.get(other.id) is other


def test_queue_lag_history_one_sample_a_minute_and_gone_knowledge_bases_dropped():
    from datetime import datetime, timedelta, timezone

    from pgmind.console.lag import LagHistory
    h = LagHistory(kept=3)
    t0 = datetime(2026, 12, 7, 12, 0, 5, tzinfo=timezone.utc)
    h.record(t0, [("a", 5, 30.0), ("b", 0, 0.0)])
    h.record(t0 + timedelta(seconds=30), [("a", 4, 60.0), ("b", 0, 0.0)])     # the same minute: replaced
    for i in range(1, 4):
        h.record(t0 + timedelta(minutes=i), [("a", 1, 10.0 * i)])             # b is gone
    series = h.series()
    assert set(series) == {"a"} and len(series["a"]) == 3                    # the last 3 minutes kept
    assert series["a"][datetime(2026, 12, 7, 12, 3, tzinfo=timezone.utc)] == 30.0


def test_group_chart_bars_per_run_and_mode():
    from pgmind.console.charts import group_chart
    c = group_chart("recall@5", "", ["#1", "#2"], {"vector": [0.5, None], "hybrid": [1.0, 0.25]}, y_max=1.0)
    assert len(c.bars) == 3 and [n["name"] for n in c.lines] == ["vector", "hybrid"]
    assert [x for _, x in c.x_labels] == ["#1", "#2"] and not c.empty
    full = next(b for b in c.bars if b["label"] == "#1 · hybrid: 1")
    assert full["y"] == 10 and full["h"] == 148                              # the whole height: 1 of 1
    assert group_chart("t", "", [], {}).empty


def test_uploaded_pictures_are_told_by_their_first_bytes():
    from pgmind.console.pages.images import picture_type
    assert picture_type(b"\x89PNG\r\n\x1a\nrest") == "PNG" and picture_type(b"\xff\xd8\xff\xe0") == "JPEG"
    assert picture_type(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP" and picture_type(b"GIF89a") == "GIF"
    assert picture_type(b"<svg xmlns='http://www.w3.org/2000/svg'>") is None
    assert picture_type(b"<html>") is None and picture_type(b"") is None


def test_eval_runs_kept_per_role_and_knowledge_base(tmp_path):
    from pgmind.console.eval_store import KEPT, EvalStore
    store = EvalStore(tmp_path)
    for i in range(KEPT + 2):
        runs = store.add(10, "alice", 7, {"scores": {"i": i}})
    assert len(runs) == KEPT and runs[-1]["n"] == KEPT + 2 and runs[0]["n"] == 3
    assert store.runs(10, "alice", 7) == runs
    assert store.runs(11, "alice", 7) == [] and store.runs(10, "bob", 7) == [] and store.runs(10, "alice", 8) == []
    folder = next((tmp_path / "console" / "eval").iterdir())
    assert folder.stat().st_mode & 0o077 == 0
