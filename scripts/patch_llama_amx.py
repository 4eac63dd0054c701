"""Mend llama.cpp's AMX tile configuration in an unpacked llama-cpp-python source tree, before
scripts/setup.sh compiles its AMX build.

ggml_tile_config_init() fills a tile_config_t on the stack and hands its address to
_tile_loadconfig.  GCC 12 (Debian 12's) does not see the intrinsic read the struct and drops the
stores, so LDTILECFG loads a config of zero rows and the first tile instruction dies with SIGILL
(docs/benchmarks.md, stops 30-31; upstream: ggml-org/llama.cpp PR 26954).  An empty asm that
takes the struct's address and clobbers memory keeps the stores.  Exits 1 when the code is not
as expected (another version): setup then builds without AMX.

    python scripts/patch_llama_amx.py SOURCE_DIR
"""
import sys
from pathlib import Path

OLD = "    _tile_loadconfig(&tc);\n"
NEW = ('    __asm__ __volatile__("" : : "r"(&tc) : "memory");   // pgmind: keep the stores above\n'
       "    _tile_loadconfig(&tc);\n")

path = Path(sys.argv[1]) / "vendor/llama.cpp/ggml/src/ggml-cpu/amx/mmq.cpp"
text = path.read_text() if path.is_file() else ""
if NEW in text:
    sys.exit(0)
if text.count(OLD) != 1 or "alignas(64) tile_config_t tc = {};" not in text:
    print(f"patch_llama_amx: {path} is not the code this mends", file=sys.stderr)
    sys.exit(1)
path.write_text(text.replace(OLD, NEW))
