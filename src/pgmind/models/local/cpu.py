"""What this CPU can do, read once: the local torch models choose their kernels by it at load time
(sessions run on different machines; a choice made at build time would be wrong on the next)."""
from __future__ import annotations

import functools


@functools.cache
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_native_bf16() -> bool:
    """Whether the CPU multiplies bf16 natively (AVX-512 BF16 or AMX).  There bf16 runs the
    embedders ~1.6-2.7x faster than fp32 at cosine >= 0.9999 (docs/benchmarks.md); elsewhere torch
    emulates bf16, slower than fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())
