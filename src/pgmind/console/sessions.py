"""Console sessions: a random id in an HttpOnly, SameSite=Strict cookie names a record kept only in
the server's memory (the signed-in role, the API key's sha256, a CSRF token, expiry).  The key itself
is never stored, in the browser or here: each request re-checks its digest against ai.api_keys, so a
revoked key, a dropped role or a role made superuser ends the session at once.  A restart signs
everyone out, which is the safe direction for a loopback console."""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

COOKIE = "pgmind_session"
PRE_COOKIE = "pgmind_pre"      # the signed-out visitor's CSRF token (the sign-in form's double submit)
IDLE_SECONDS = 30 * 60         # a session unused this long is gone
MAX_SECONDS = 12 * 3600        # and none lives longer than this, used or not


@dataclass
class Session:
    id: str
    role: str
    key_sha256: str
    csrf: str
    created: float
    last_seen: float
    admin: bool = False

    def expired(self, now: float) -> bool:
        return now - self.last_seen > IDLE_SECONDS or now - self.created > MAX_SECONDS


class SessionStore:
    """In-memory sessions (one model server process serves the console)."""

    def __init__(self, clock=time.monotonic):
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def create(self, role: str, key_sha256: str, admin: bool = False) -> Session:
        now = self._clock()
        s = Session(secrets.token_urlsafe(32), role, key_sha256, secrets.token_urlsafe(32), now, now, admin)
        with self._lock:
            self._drop_expired(now)
            self._sessions[s.id] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = self._clock()
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None
            if s.expired(now):
                del self._sessions[sid]
                return None
            s.last_seen = now
            return s

    def delete(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def delete_key(self, key_sha256: str) -> int:
        """Ends every session of an API key (it was revoked, or its role dropped or made a superuser):
        the one request that noticed it ends them all, not only its own."""
        with self._lock:
            gone = [sid for sid, s in self._sessions.items() if s.key_sha256 == key_sha256]
            for sid in gone:
                del self._sessions[sid]
        return len(gone)

    def _drop_expired(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if s.expired(now)]:
            del self._sessions[sid]


@dataclass
class SignInLimiter:
    """At most ``attempts`` failed sign-ins per client address in ``window`` seconds (a key is 32
    random bytes, so this is about noise and log flooding more than guessing)."""
    attempts: int = 10
    window: float = 300.0
    clock: object = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allowed(self, client: str) -> bool:
        now = self.clock()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < self.window]
            self._failures[client] = recent
            if not recent:
                self._failures.pop(client, None)
            return len(recent) < self.attempts

    def failed(self, client: str) -> None:
        with self._lock:
            self._failures.setdefault(client, []).append(self.clock())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def retry_after(self, client: str) -> int:
        with self._lock:
            recent = self._failures.get(client) or [self.clock()]
            return max(1, int(self.window - (self.clock() - min(recent))) + 1)
