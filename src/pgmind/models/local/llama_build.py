"""Which llama.cpp build the local chat models run on.

scripts/setup.sh installs llama-cpp-python built portably (AVX2) and, on a CPU with AVX-512
(VNNI, VBMI, BF16), builds it a second time for that under ``.venv/llama-cpp-avx512``: there it
reads prompts ~1.35x faster (docs/benchmarks.md) — or, on a CPU that also has AMX, under
``.venv/llama-cpp-amx`` with llama.cpp's AMX kernels as well (~1.4x faster again).  The choice is
made when pgmind first loads llama.cpp, from the CPU running now — a ``.venv`` can outlive the
machine it was built on, and an instruction the CPU lacks kills the process ("Illegal
instruction"), so a faster build is taken only where every instruction set it was compiled for is
present.  ``PGMIND_LLAMA_BUILD`` names the build to use (``portable``, ``avx512``, ``amx``; the
default ``auto`` takes the fastest this CPU runs) — a named build that is not there, or that
this CPU cannot run, falls back to the portable one."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .cpu import cpu_flags

AVX512_DIR = "llama-cpp-avx512"
AMX_DIR = "llama-cpp-amx"
# what scripts/setup.sh compiles that build with (GGML_AVX2, FMA, F16C, BMI2, AVX512 — F, CD, VL,
# DQ, BW —, AVX512_VBMI, AVX512_VNNI, AVX512_BF16), as /proc/cpuinfo names them
AVX512_NEEDS = frozenset({"avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
                          "avx512vbmi", "avx512_vnni", "avx512_bf16"})
# the AMX build: the same and GGML_AMX_TILE, AMX_INT8, AMX_BF16
AMX_NEEDS = AVX512_NEEDS | {"amx_tile", "amx_int8", "amx_bf16"}
# fastest first
BUILDS = (("amx", AMX_DIR, AMX_NEEDS), ("avx512", AVX512_DIR, AVX512_NEEDS))


def runnable() -> list[tuple[str, Path]]:
    """The builds besides the portable one that are installed and that this CPU can run, fastest
    first: (name, folder)."""
    return [(name, Path(sys.prefix) / folder) for name, folder, needs in BUILDS
            if (Path(sys.prefix) / folder / "llama_cpp" / "__init__.py").is_file() and needs <= cpu_flags()]


def select() -> str:
    """Put the build this CPU can run best first on sys.path, before llama_cpp is imported; the
    name of the build in use ("amx", "avx512" or "portable")."""
    if "llama_cpp" in sys.modules:
        loaded = sys.modules["llama_cpp"].__file__ or ""
        return next((name for name, folder, _ in BUILDS if str(Path(sys.prefix) / folder) in loaded), "portable")
    wanted = os.environ.get("PGMIND_LLAMA_BUILD", "auto")
    for name, path in runnable():
        if wanted in ("auto", name):
            sys.path.insert(0, str(path))
            return name
    return "portable"


def best_for_this_cpu() -> str:
    """The fastest build this CPU can run, built or not (what scripts/setup.sh compiles)."""
    return next((name for name, _, needs in BUILDS if needs <= cpu_flags()), "portable")


def _try(gguf: str) -> str:
    """Load a GGUF with the build select() picks and read a 64-token prompt with it: the AMX
    kernels run only on a prompt of more than one token, and a build that dies here (SIGILL) would
    die in the model server."""
    name = select()
    from llama_cpp import Llama
    llm = Llama(model_path=gguf, n_ctx=256, n_threads=os.cpu_count(), verbose=False)
    llm.eval(llm.tokenize(b"SELECT pg_database_size(current_database()); " * 8)[:64])
    return name


if __name__ == "__main__":
    # scripts/setup.sh: `python -m pgmind.models.local.llama_build` names the build to compile;
    # `… --try GGUF` checks the build chosen (PGMIND_LLAMA_BUILD) runs, printing its name
    print(_try(sys.argv[2]) if sys.argv[1:2] == ["--try"] else best_for_this_cpu())
