"""What a JSON schema may make of a llama.cpp grammar, and a child process that builds each new
grammar before the model server does.

A schema (response_format, a forced tool's parameters) becomes GBNF text (llama-cpp-python's
converter) which llama.cpp parses when generation starts — natively, in the server's process,
where a crash is the whole server's.  Two ways it crashed (measured in docs/security.md's terms
by tests/security/test_grammar_bounds.py and the numbers below):

* the converter writes a count as nested optional groups — maxLength 2000 is
  ``(char (char (char …)?)?)?`` 2000 deep — and llama.cpp's recursive-descent parser takes about
  450 bytes of stack per level: it overflows an 8 MB stack at ~18,700 levels, a 2 MB one at
  ~4,600, 1 MB at ~2,300;
* past 1,000 levels the parser gives up (its MAX_REPETITION_THRESHOLD counts the rules a group
  makes: two a level, at most 2,000) and llama.cpp returns no sampler — which llama-cpp-python
  0.3.x adds to the sampler chain anyway: SIGSEGV at the first token.  maxLength 2000 and
  ``pattern: ^a{0,3000}$`` die this way; any other grammar llama.cpp rejects did too.

So: (1) bounds — on the schema (each named for what to lower) and on the GBNF it becomes
(nesting, repetition counts, size), a wide margin under both crash points; (2) every grammar
text the server has not built before is built first by grammar_child.py, in a child process, on
a thread with a quarter of this thread's stack (at most 2 MB): what fails or crashes there is a
400, never the server's crash.  Results are kept per grammar text (sha256), so a repeated schema
costs a dictionary look-up."""
from __future__ import annotations

import collections
import ctypes
import ctypes.util
import functools
import hashlib
import os
import re
import resource
import select
import subprocess
import sys
import threading

from ...errors import InvalidRequestError

# measured crash points (llama.cpp of llama-cpp-python 0.3.36): nested groups — 1,000 (parser's
# own limit, then a NULL sampler), ~18,700 on 8 MB of stack, ~4,600 on 2 MB; see the docstring
MAX_NESTING = 400            # GBNF group nesting: 2.5x under 1,000, 11x under the child's 2 MB
MAX_COUNT = 256              # minLength/maxLength/minItems/maxItems/…/a pattern's {m,n}; GBNF {m,n}
MAX_GBNF_BYTES = 512 * 1024  # the grammar text
MAX_RULES = 4096             # rules (lines) in the grammar text
MAX_SCHEMA_BYTES = 64 * 1024
MAX_SCHEMA_DEPTH = 32
MAX_PATTERN_CHARS = 1000

COUNT_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
SIMPLIFY = ("lower maxLength/maxItems and the {m,n} counts in patterns, or leave them out and check "
            "the answer yourself; fewer nested levels")


def check_schema(schema, what: str) -> None:
    """The schema's own bounds, named by the keyword to change (before it is converted)."""
    import json
    if schema is None:
        return
    try:
        size = len(json.dumps(schema))
    except (TypeError, ValueError, RecursionError):
        raise InvalidRequestError(f"the {what} is nested too deep, or is not JSON", hint="flatten the schema") from None
    if size > MAX_SCHEMA_BYTES:
        raise InvalidRequestError(f"the {what} is over {MAX_SCHEMA_BYTES // 1024} KB", hint="send a smaller schema")
    _check_node(schema, what, 0)


def _check_node(node, what: str, depth: int) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise InvalidRequestError(f"the {what} is nested more than {MAX_SCHEMA_DEPTH} levels", hint="flatten the schema")
    if isinstance(node, dict):
        for key, value in node.items():
            if key in COUNT_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and value > MAX_COUNT:
                raise InvalidRequestError(
                    f"the {what}'s {key} is {value}; the most a grammar takes is {MAX_COUNT}",
                    hint=f"lower {key}, or leave it out and check the answer yourself")
            if key == "pattern" and isinstance(value, str):
                _check_pattern(value, what)
            _check_node(value, what, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _check_node(value, what, depth + 1)


_QUANTIFIER = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


def _check_pattern(pattern: str, what: str) -> None:
    """A regex's {m}, {m,}, {m,n} become m copies and n-m nested groups of the grammar."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise InvalidRequestError(f"a pattern in the {what} is over {MAX_PATTERN_CHARS} characters",
                                  hint="shorten the pattern")
    for m in _QUANTIFIER.finditer(pattern):
        for count in m.groups():
            if count and (len(count) > 9 or int(count) > MAX_COUNT):
                raise InvalidRequestError(
                    f"a pattern in the {what} repeats {m.group(0)[:40]}; the most a grammar takes is {MAX_COUNT}",
                    hint="lower the pattern's {m,n} counts, or use * or + and check the answer yourself")


def check_gbnf(text: str, what: str) -> None:
    """The grammar text's bounds, whatever wrote it: size, rules, group nesting, {m,n} counts,
    and no <token> references (the converter writes none; they would need the model's vocab)."""
    if len(text.encode("utf-8")) > MAX_GBNF_BYTES:
        raise InvalidRequestError(f"the {what} makes a grammar over {MAX_GBNF_BYTES // 1024} KB", hint=SIMPLIFY)
    rules = depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':                                   # a literal: skip to its closing quote
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c == "[":                                 # a character class
            i += 1
            while i < n and text[i] != "]":
                i += 2 if text[i] == "\\" else 1
        elif c == "#":                                 # a comment, to the end of the line
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif c == "(":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_NESTING:
                raise InvalidRequestError(
                    f"the {what} makes a grammar nested more than {MAX_NESTING} levels deep", hint=SIMPLIFY)
        elif c == ")":
            depth -= 1
        elif c == "{":
            m = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}").match(text, i)
            counts = [g for g in (m.groups() if m else ()) if g]
            if not m or any(len(g) > 9 or int(g) > MAX_COUNT for g in counts):
                raise InvalidRequestError(
                    f"the {what} makes a grammar repetition {text[i:i + 20]!r}; the most is {MAX_COUNT}", hint=SIMPLIFY)
        elif c == "<":
            raise InvalidRequestError(f"the {what} makes a grammar with a token reference", hint=SIMPLIFY)
        elif c == ":" and text.startswith("::=", i):
            rules += 1
            if rules > MAX_RULES:
                raise InvalidRequestError(f"the {what} makes a grammar of more than {MAX_RULES} rules", hint=SIMPLIFY)
        i += 1


# -- the child process ---------------------------------------------------------------------------

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grammar_child.py")
CHILD_TIMEOUT_S = 20.0      # to build one bounded grammar (milliseconds, measured) or start the child
CACHE_SIZE = 2048


@functools.lru_cache(maxsize=1)
def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.pthread_self.restype = ctypes.c_ulong
    libc.pthread_getattr_np.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
    libc.pthread_attr_getstack.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p),
                                           ctypes.POINTER(ctypes.c_size_t)]
    libc.pthread_attr_destroy.argtypes = [ctypes.c_void_p]
    return libc


def thread_stack_size() -> int:
    """The calling thread's stack in bytes (glibc's pthread_getattr_np); without it, what a
    thread gets by default: threading.stack_size() if set, else RLIMIT_STACK (glibc's default
    for new threads too), else 2 MB."""
    try:
        libc = _libc()
        attr = ctypes.create_string_buffer(256)          # pthread_attr_t: 56 bytes on x86-64 glibc
        if libc.pthread_getattr_np(libc.pthread_self(), attr) == 0:
            addr, size = ctypes.c_void_p(), ctypes.c_size_t()
            ok = libc.pthread_attr_getstack(attr, ctypes.byref(addr), ctypes.byref(size)) == 0
            libc.pthread_attr_destroy(attr)
            if ok and size.value:
                return size.value
    except (OSError, AttributeError):
        pass
    if threading.stack_size():
        return threading.stack_size()
    soft = resource.getrlimit(resource.RLIMIT_STACK)[0]
    return soft if soft not in (resource.RLIM_INFINITY, -1) else 2 << 20


def child_stack(parent_stack: int) -> int:
    """The child builds on a quarter of the caller's stack, at most 2 MB, at least 256 KB."""
    return max(256 << 10, min(2 << 20, parent_stack // 4)) & ~0xFFF


class GrammarChecker:
    """One child process (started on first use, again after one dies), one grammar at a time."""

    def __init__(self):
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._stack = 0
        self._results: collections.OrderedDict[str, str | None] = collections.OrderedDict()
        self.built = 0        # grammars sent to the child (the tests read it)

    def check(self, text: str, what: str) -> None:
        """A 400 unless the grammar text is within check_gbnf's bounds and llama.cpp builds it in
        the child (the verdict kept per text: a repeated grammar costs its sha256)."""
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        stack = child_stack(thread_stack_size())
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                error = self._results[key]
            else:
                check_gbnf(text, what)
                error = self._build(text, stack)
                self._results[key] = error
                if len(self._results) > CACHE_SIZE:
                    self._results.popitem(last=False)
        if error is not None:
            raise InvalidRequestError(f"the {what} makes a grammar the server cannot build: {error}"[:400],
                                      hint="simplify the schema: " + SIMPLIFY)

    def _build(self, text: str, stack: int) -> str | None:
        """None when llama.cpp builds the grammar; else why not."""
        import llama_cpp
        if self._proc is None or self._proc.poll() is not None or self._stack != stack:
            self._stop()
            parent = os.path.dirname(os.path.dirname(os.path.abspath(llama_cpp.__file__)))
            self._proc = subprocess.Popen([sys.executable, "-I", CHILD, parent, str(stack)],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, close_fds=True)
            self._stack = stack
        data = text.encode("utf-8")
        self.built += 1
        try:
            self._proc.stdin.write(b"%d\n" % len(data) + data)
            self._proc.stdin.flush()
            ready, _, _ = select.select([self._proc.stdout], [], [], CHILD_TIMEOUT_S)
            line = self._proc.stdout.readline() if ready else b""
        except (BrokenPipeError, OSError):
            line = b""
        if line.startswith(b"ok"):
            return None
        if line.startswith(b"error"):
            return "llama.cpp rejects it (" + line[6:].decode("utf-8", "replace").strip() + ")"
        # no answer: the parser crashed the child (or took too long) — it would have crashed us
        if not ready:
            self._stop()
            return f"llama.cpp took over {CHILD_TIMEOUT_S:.0f} s to build it"
        code = self._proc.wait(5)
        self._proc = None
        return f"llama.cpp's parser crashed on it (signal {-code})" if code < 0 else "llama.cpp's parser failed on it"

    def _stop(self) -> None:
        if self._proc is not None:
            try:
                self._proc.kill()
                self._proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
            self._proc = None


CHECKER = GrammarChecker()
