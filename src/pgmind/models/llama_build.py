"""Which llama.cpp build the local chat models run on.

scripts/setup.sh installs llama-cpp-python built portably (AVX2) and, on a CPU with AVX-512
(VNNI, VBMI, BF16), builds it a second time for that under ``.venv/llama-cpp-avx512``: there it
reads prompts ~1.35x faster (docs/benchmarks.md).  The choice is made when pgmind first loads
llama.cpp, from the CPU running now — a ``.venv`` can outlive the machine it was built on, and an
instruction the CPU lacks kills the process ("Illegal instruction"), so the faster build is taken
only where every instruction set it was compiled for is present.  ``PGMIND_LLAMA_BUILD=portable``
keeps the portable one."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .cpu import cpu_flags

AVX512_DIR = "llama-cpp-avx512"
# what scripts/setup.sh compiles that build with (GGML_AVX2, FMA, F16C, BMI2, AVX512 — F, CD, VL,
# DQ, BW —, AVX512_VBMI, AVX512_VNNI, AVX512_BF16), as /proc/cpuinfo names them
AVX512_NEEDS = frozenset({"avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw",
                          "avx512vbmi", "avx512_vnni", "avx512_bf16"})


def select() -> str:
    """Put the build this CPU can run best first on sys.path, before llama_cpp is imported; the
    name of the build in use ("avx512" or "portable")."""
    fast = Path(sys.prefix) / AVX512_DIR
    if "llama_cpp" in sys.modules:
        return "avx512" if str(fast) in (sys.modules["llama_cpp"].__file__ or "") else "portable"
    if (os.environ.get("PGMIND_LLAMA_BUILD", "auto") != "portable"
            and (fast / "llama_cpp" / "__init__.py").is_file() and AVX512_NEEDS <= cpu_flags()):
        sys.path.insert(0, str(fast))
        return "avx512"
    return "portable"
