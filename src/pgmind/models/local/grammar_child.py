"""The child process that builds llama.cpp grammars before the model server does (see
grammar_guard.py).  Run as a script, not imported: it imports nothing of pgmind, only the ctypes
bindings of the llama.cpp the server loaded.

    python grammar_child.py LLAMA_CPP_PARENT_DIR STACK_BYTES

Reads requests from stdin: a line with a byte count, then that many bytes of GBNF.  Answers each
with one line on stdout: ``ok``, or ``error <llama.cpp's message>``.  Each grammar is built by
llama.cpp's own parser (llama_sampler_init_grammar, what llama-cpp-python calls when generation
starts) on a thread with a stack of STACK_BYTES — smaller than the server's generation thread's,
so a grammar that overflows the server's stack overflows this one first.  A grammar that crashes
the parser kills only this process; the server reads that as "cannot build"."""
import importlib.util
import os
import sys
import tempfile
import threading
import types


def _bindings(parent: str):
    """llama_cpp.llama_cpp (the ctypes bindings) without llama_cpp/__init__ (which would import
    numpy, jinja2 and the rest of llama-cpp-python: ~1 s more per child)."""
    pkg = types.ModuleType("llama_cpp")
    pkg.__path__ = [os.path.join(parent, "llama_cpp")]
    sys.modules["llama_cpp"] = pkg
    spec = importlib.util.spec_from_file_location("llama_cpp.llama_cpp",
                                                  os.path.join(parent, "llama_cpp", "llama_cpp.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["llama_cpp.llama_cpp"] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    parent, stack = sys.argv[1], int(sys.argv[2])
    # llama.cpp prints a parse error, and the whole grammar, on stderr: kept in a file, read back
    # for the error's message
    log = tempfile.TemporaryFile()
    os.dup2(log.fileno(), 2)
    lib = _bindings(parent)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    threading.stack_size(stack)
    while True:
        header = inp.readline()
        if not header:
            return
        text = inp.read(int(header))
        result: list[bytes] = []

        def build():
            sampler = lib.llama_sampler_init_grammar(None, text, b"root")
            if sampler:
                lib.llama_sampler_free(sampler)
                result.append(b"ok")
            else:
                result.append(b"error " + _parse_error(log))

        log.seek(0)
        log.truncate()
        worker = threading.Thread(target=build)
        worker.start()
        worker.join()
        out.write(result[0] + b"\n")
        out.flush()


def _parse_error(log) -> bytes:
    log.seek(0)
    text = log.read(4096)
    for line in text.splitlines():
        if b"error parsing grammar:" in line:
            return line.split(b"error parsing grammar:", 1)[1].strip()[:200]
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:200]
    return b"llama.cpp did not build it"


if __name__ == "__main__":
    main()
