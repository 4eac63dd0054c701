"""Where the console keeps evaluation runs: in the pgmind home, one JSON line per run, in a file per
(role, knowledge base) — ``<home>/console/eval/<role oid>-<role digest>/<vectorizer id>.jsonl``,
the last KEPT runs.  The role's OID and the vectorizer's id name the files, so a role or a knowledge
base made again under an old name does not inherit the old one's runs; the folders are the server's
alone (0700).  No table: runs are the console's memory, not data a role queries, and keeping them
needs no migration."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

KEPT = 20
_lock = threading.Lock()


class EvalStore:
    def __init__(self, home: Path):
        self.root = Path(home) / "console" / "eval"

    def _file(self, role_oid: int, role: str, vid: int) -> Path:
        digest = hashlib.sha256(role.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        return self.root / f"{int(role_oid)}-{digest}" / f"{int(vid)}.jsonl"

    def runs(self, role_oid: int, role: str, vid: int) -> list[dict]:
        path = self._file(role_oid, role, vid)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:          # (a line cut by a crash mid-write is skipped, not fatal)
                continue
        return out

    def add(self, role_oid: int, role: str, vid: int, run: dict) -> list[dict]:
        """Appends the run (numbered after the last kept one) and keeps the last KEPT; the file is
        replaced whole (written beside it, then renamed), so a reader never sees half of it."""
        path = self._file(role_oid, role, vid)
        with _lock:
            runs = self.runs(role_oid, role, vid)
            run = {**run, "n": (runs[-1]["n"] + 1) if runs else 1}
            runs = (runs + [run])[-KEPT:]
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.parent.mkdir(exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.writelines(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in runs)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        return runs
