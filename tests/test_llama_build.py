"""The llama.cpp build is chosen by the CPU running now: the AVX-512 build only where every
instruction set it was compiled for is there (else "Illegal instruction" would kill the server)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgmind.models.local import cpu, llama_build


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    (tmp_path / llama_build.AVX512_DIR / "llama_cpp").mkdir(parents=True)
    (tmp_path / llama_build.AVX512_DIR / "llama_cpp" / "__init__.py").write_text("")
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "llama_cpp", raising=False)
    monkeypatch.delenv("PGMIND_LLAMA_BUILD", raising=False)
    return tmp_path


def test_avx512_build_only_where_the_cpu_has_all_it_needs(fake_env, monkeypatch):
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: llama_build.AVX512_NEEDS | {"sse4_2"})
    assert llama_build.select() == "avx512"
    assert sys.path[0] == str(fake_env / llama_build.AVX512_DIR)


@pytest.mark.parametrize("missing", ["avx512_bf16", "avx512_vnni", "avx512f"])
def test_portable_build_when_one_instruction_set_is_missing(fake_env, monkeypatch, missing):
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: llama_build.AVX512_NEEDS - {missing})
    assert llama_build.select() == "portable"
    assert str(fake_env / llama_build.AVX512_DIR) not in sys.path


def test_portable_build_when_asked_or_not_built(fake_env, monkeypatch):
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: llama_build.AVX512_NEEDS)
    monkeypatch.setenv("PGMIND_LLAMA_BUILD", "portable")
    assert llama_build.select() == "portable"
    monkeypatch.delenv("PGMIND_LLAMA_BUILD")
    (fake_env / llama_build.AVX512_DIR / "llama_cpp" / "__init__.py").unlink()
    assert llama_build.select() == "portable"


def _with_amx_build(env):
    (env / llama_build.AMX_DIR / "llama_cpp").mkdir(parents=True)
    (env / llama_build.AMX_DIR / "llama_cpp" / "__init__.py").write_text("")


def test_amx_build_first_where_the_cpu_has_amx(fake_env, monkeypatch):
    _with_amx_build(fake_env)
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: llama_build.AMX_NEEDS)
    assert llama_build.select() == "amx"
    assert sys.path[0] == str(fake_env / llama_build.AMX_DIR)
    assert str(fake_env / llama_build.AVX512_DIR) not in sys.path


@pytest.mark.parametrize("missing", ["amx_tile", "amx_int8", "amx_bf16"])
def test_avx512_build_when_the_cpu_lacks_an_amx_set(fake_env, monkeypatch, missing):
    """A .venv built on an AMX Xeon, run on a CPU without AMX: the AVX-512 build if it is there,
    else the portable one — never the AMX build."""
    _with_amx_build(fake_env)
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: llama_build.AMX_NEEDS - {missing})
    assert llama_build.select() == "avx512"
    monkeypatch.setattr(sys, "path", [p for p in sys.path if llama_build.AVX512_DIR not in p])
    (fake_env / llama_build.AVX512_DIR / "llama_cpp" / "__init__.py").unlink()
    assert llama_build.select() == "portable"
    assert not any(llama_build.AMX_DIR in p for p in sys.path)


@pytest.mark.parametrize("wanted, expected", [("avx512", "avx512"), ("amx", "amx"), ("portable", "portable"),
                                              ("auto", "amx"), ("sse2", "portable")])
def test_a_named_build_is_used_where_it_runs(fake_env, monkeypatch, wanted, expected):
    """PGMIND_LLAMA_BUILD names one build (bench/bench_llama_builds.py compares them); a name that
    is no build falls back to the portable one."""
    _with_amx_build(fake_env)
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: llama_build.AMX_NEEDS)
    monkeypatch.setenv("PGMIND_LLAMA_BUILD", wanted)
    assert llama_build.select() == expected


def test_setup_compiles_the_fastest_build_this_cpu_runs(monkeypatch):
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: llama_build.AMX_NEEDS)
    assert llama_build.best_for_this_cpu() == "amx"
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: llama_build.AVX512_NEEDS | {"amx_tile"})
    assert llama_build.best_for_this_cpu() == "avx512"
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: frozenset({"avx2", "fma", "f16c"}))
    assert llama_build.best_for_this_cpu() == "portable"


def test_the_amx_mend_applies_once_and_refuses_other_code(tmp_path):
    """scripts/patch_llama_amx.py: the tile configuration's stores kept (GCC 12 dropped them), the
    mend applied once; code it does not know is left alone and setup builds without AMX."""
    mmq = tmp_path / "vendor/llama.cpp/ggml/src/ggml-cpu/amx/mmq.cpp"
    mmq.parent.mkdir(parents=True)
    original = ("inline void ggml_tile_config_init(void) {\n    alignas(64) tile_config_t tc = {};\n"
                "    tc.palette_id = 1;\n    _tile_loadconfig(&tc);\n    done = true;\n}\n")
    mmq.write_text(original)
    script = Path(__file__).resolve().parent.parent / "scripts" / "patch_llama_amx.py"
    for _ in range(2):
        subprocess.run([sys.executable, str(script), str(tmp_path)], check=True)
        mended = mmq.read_text()
        assert mended.count('__asm__ __volatile__("" : : "r"(&tc) : "memory");') == 1
        assert mended.index("__asm__") < mended.index("_tile_loadconfig(&tc)")
    mmq.write_text(original.replace("alignas(64) tile_config_t tc = {};", "static const tile_config_t tc = {1};"))
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "not the code this mends" in r.stderr
    assert "__asm__" not in mmq.read_text()


def test_the_chosen_build_loads_and_has_its_instructions():
    """On this machine, in a fresh process: the build picked is the one imported, and llama.cpp
    reports the instruction sets that build was compiled for."""
    code = ("from pgmind.models.local import llama as local_llama; import json, llama_cpp; "
            "print(json.dumps([local_llama.LLAMA_BUILD, llama_cpp.__file__, llama_cpp.llama_print_system_info().decode()]))")
    build, path, info = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                  text=True).stdout.strip().splitlines()[-1])
    runs = [name for name, folder, needs in llama_build.BUILDS
            if needs <= cpu.cpu_flags() and (Path(sys.prefix) / folder / "llama_cpp").is_dir()]
    assert build == (runs[0] if runs else "portable")
    assert (llama_build.AMX_DIR in path) == (build == "amx")
    assert (llama_build.AVX512_DIR in path) == (build == "avx512")
    assert ("AVX512_VNNI = 1" in info) == (build != "portable"), info
    assert ("AMX_INT8 = 1" in info) == (build == "amx"), info
