"""The llama.cpp build is chosen by the CPU running now: the AVX-512 build only where every
instruction set it was compiled for is there (else "Illegal instruction" would kill the server)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgmind.models import cpu, llama_build


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


def test_the_chosen_build_loads_and_has_its_instructions():
    """On this machine, in a fresh process: the build picked is the one imported, and llama.cpp
    reports the instruction sets that build was compiled for."""
    code = ("from pgmind.models import local_llama; import json, llama_cpp; "
            "print(json.dumps([local_llama.LLAMA_BUILD, llama_cpp.__file__, llama_cpp.llama_print_system_info().decode()]))")
    build, path, info = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                  text=True).stdout.strip().splitlines()[-1])
    fast = (llama_build.AVX512_NEEDS <= cpu.cpu_flags()
            and (Path(sys.prefix) / llama_build.AVX512_DIR / "llama_cpp").is_dir())
    assert build == ("avx512" if fast else "portable")
    assert (llama_build.AVX512_DIR in path) == fast
    assert ("AVX512_VNNI = 1" in info) == fast, info
