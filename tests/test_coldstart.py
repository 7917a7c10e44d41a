"""pyphase.coldstart: the bytecode cache of packages without __pycache__, and its background compile.

Each case runs in a fresh interpreter (the finder is process-wide state) on a package generated
here, with PYTHONDONTWRITEBYTECODE so that Python itself writes no __pycache__ for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyphase import coldstart

ROOT = Path(__file__).resolve().parents[1]


def make_package(base: Path, name: str = "ppcs_pkg", n_extra: int = 0) -> Path:
    pkg = base / name
    (pkg / "sub").mkdir(parents=True)
    (pkg / "tests").mkdir()
    (pkg / "__init__.py").write_text("from .a import VALUE\nSQUARES = [i * i for i in range(5)]\n")
    (pkg / "a.py").write_text("VALUE = 41 + 1\ndef where():\n    return where.__code__.co_filename\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import a\nDOUBLE = 2 * a.VALUE\n")
    (pkg / "tests" / "t.py").write_text("X = 1\n")
    for i in range(n_extra):
        (pkg / f"m{i}.py").write_text(f"N = {i}\n" + "def f(x):\n    return x + N\n" * 3)
    return pkg


def run_py(code: str, base: Path, cache: Path, **env: str) -> dict:
    """Run `code` in a fresh interpreter with `base` and the repository on the path; it prints JSON."""
    full_env = dict(os.environ, PYTHONPATH=f"{base}{os.pathsep}{ROOT}", PYTHONDONTWRITEBYTECODE="1",
                    PYPHASE_PYCACHE=str(cache))
    full_env.pop("PYPHASE_COLDSTART", None)  # the case's own `env` decides
    full_env.update(env)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


IMPORT = """
import json, sys
from pyphase import coldstart
w = coldstart.start(("ppcs_pkg",), workers=0)
import ppcs_pkg, ppcs_pkg.sub.b
print(json.dumps({"finder": w.finder is not None, "value": ppcs_pkg.VALUE, "double": ppcs_pkg.sub.b.DOUBLE,
                  "squares": ppcs_pkg.SQUARES, "where": ppcs_pkg.a.where(), "file": ppcs_pkg.a.__file__,
                  "loader": type(ppcs_pkg.a.__spec__.loader).__name__}))
"""


def test_cache_written_then_loaded_without_compiling(tmp_path: Path) -> None:
    pkg = make_package(tmp_path)
    cache = tmp_path / "cache"
    first = run_py(IMPORT, tmp_path, cache)
    assert first["finder"] and first["loader"] == "Loader"
    assert (first["value"], first["double"], first["squares"]) == (42, 84, [0, 1, 4, 9, 16])
    # The code objects name the source, as Python's own loader's do.
    assert first["where"] == first["file"] == str(pkg / "a.py")
    assert not (pkg / "__pycache__").exists()
    for src in (pkg / "__init__.py", pkg / "a.py", pkg / "sub" / "b.py"):
        cfile = Path(coldstart.cache_path(str(cache), str(src)))
        assert cfile.is_file(), cfile
        code = coldstart.read_cached(str(cfile), str(src))
        assert code == coldstart.compile_source(str(src)) and code.co_filename == str(src)
    # A second process loads every module from the cache: with compiling made to fail, it still imports.
    second = run_py("from pyphase import coldstart\n"
                    "def no(*a):\n    raise AssertionError('compiled')\n"
                    "coldstart.compile_source = no\n" + IMPORT, tmp_path, cache)
    assert second == first


def test_edited_source_is_compiled_again(tmp_path: Path) -> None:
    pkg = make_package(tmp_path)
    cache = tmp_path / "cache"
    assert run_py(IMPORT, tmp_path, cache)["value"] == 42
    # The same size (only the mtime tells), then another size.
    size = (pkg / "a.py").stat().st_size
    (pkg / "a.py").write_text("VALUE = 41 + 2\ndef where():\n    return where.__code__.co_filename\n")
    assert (pkg / "a.py").stat().st_size == size
    os.utime(pkg / "a.py", (1_000_000_000, 1_000_000_000))  # another mtime even within one second
    again = run_py(IMPORT, tmp_path, cache)
    assert (again["value"], again["double"]) == (43, 86)
    (pkg / "a.py").write_text("VALUE = 7\ndef where():\n    return where.__code__.co_filename\n")
    os.utime(pkg / "a.py", (1_000_000_000, 1_000_000_000))
    again = run_py(IMPORT, tmp_path, cache)
    assert (again["value"], again["double"]) == (7, 14)
    cfile = coldstart.cache_path(str(cache), str(pkg / "a.py"))
    assert coldstart.read_cached(cfile, str(pkg / "a.py")) is not None


def test_corrupt_cache_entry_is_replaced(tmp_path: Path) -> None:
    pkg = make_package(tmp_path)
    cache = tmp_path / "cache"
    run_py(IMPORT, tmp_path, cache)
    cfile = Path(coldstart.cache_path(str(cache), str(pkg / "a.py")))
    good = cfile.read_bytes()
    cfile.write_bytes(good[:20] + b"\x00garbage")
    assert coldstart.read_cached(str(cfile), str(pkg / "a.py")) is None
    assert run_py(IMPORT, tmp_path, cache)["value"] == 42
    assert cfile.read_bytes() == good


def test_background_workers_compile_the_package(tmp_path: Path) -> None:
    pkg = make_package(tmp_path, n_extra=60)
    cache = tmp_path / "cache"
    res = run_py("""
        import json
        from pyphase import coldstart
        w = coldstart.start(("ppcs_pkg",), workers=3)
        n = len(w.procs)
        w.wait()
        print(json.dumps({"procs": n, "codes": [p.returncode for p in w.procs], "files": w.files}))
        """, tmp_path, cache)
    # Every source outside SKIP_DIRS (not tests/), none of them imported here.
    expected = sorted(str(p) for p in pkg.rglob("*.py") if "tests" not in p.parts)
    assert res["procs"] == 3 and res["codes"] == [0, 0, 0] and res["files"] == len(expected) == 64
    assert sorted(coldstart.sources(str(pkg))) == expected
    for src in expected:
        code = coldstart.read_cached(coldstart.cache_path(str(cache), src), src)
        assert code is not None and code == coldstart.compile_source(src) and code.co_filename == src, src
    assert not Path(coldstart.cache_path(str(cache), str(pkg / "tests" / "t.py"))).exists()


def test_nothing_done_where_pycache_exists_or_switched_off(tmp_path: Path) -> None:
    make_package(tmp_path)
    cache = tmp_path / "cache"
    assert not run_py(IMPORT, tmp_path, cache, PYPHASE_COLDSTART="0")["finder"]
    assert not cache.exists()
    # Python writes the package's __pycache__ (no PYTHONDONTWRITEBYTECODE): then nothing to do.
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", "import ppcs_pkg.sub.b"], env=env, check=True)
    assert (tmp_path / "ppcs_pkg" / "__pycache__").is_dir()
    assert not run_py(IMPORT, tmp_path, cache)["finder"]
    assert run_py(IMPORT, tmp_path, cache, PYPHASE_COLDSTART="force")["finder"]


def test_start_once_per_process(tmp_path: Path) -> None:
    make_package(tmp_path)
    res = run_py("""
        import json
        from pyphase import coldstart
        a = coldstart.start(("ppcs_pkg",), workers=0)
        b = coldstart.start(("numpy",), workers=0)
        import sys
        print(json.dumps({"same": a is b, "finders": sum(isinstance(f, coldstart.CacheFinder) for f in sys.meta_path)}))
        """, tmp_path, tmp_path / "cache")
    assert res == {"same": True, "finders": 1}


def test_single_file_module(tmp_path: Path) -> None:
    (tmp_path / "ppcs_single.py").write_text("ANSWER = 6 * 7\n")
    cache = tmp_path / "cache"
    res = run_py("""
        import json
        from pyphase import coldstart
        w = coldstart.start(("ppcs_single", "ppcs_absent"), workers=0)
        import ppcs_single
        print(json.dumps({"roots": sorted(w.finder.roots), "answer": ppcs_single.ANSWER,
                          "loader": type(ppcs_single.__spec__.loader).__name__}))
        """, tmp_path, cache)
    assert res == {"roots": ["ppcs_single"], "answer": 42, "loader": "Loader"}
    assert Path(coldstart.cache_path(str(cache), str(tmp_path / "ppcs_single.py"))).is_file()


def test_packages_for_commands() -> None:
    assert "torch" in coldstart.packages_for(["train", "phase3a"]) and "triton" in coldstart.packages_for(["calibrate"])
    for argv in (["predict", "--clip", "1.0"], ["--help"], [], ["results", "list"]):
        pk = coldstart.packages_for(argv)
        assert "torch" not in pk and {"numpy", "polars", "typer"} <= set(pk)


def test_cache_path_mirrors_the_source() -> None:
    p = coldstart.cache_path("/c", "/x/y/z.py")
    assert p.startswith("/c/x/y/z.py.") and p.endswith(".pyc") and sys.implementation.cache_tag in p


@pytest.mark.parametrize("cmd", ["data", "train"])
def test_console_sets_up_the_cache(tmp_path: Path, cmd: str) -> None:
    """The console script starts coldstart for the packages the command imports (torch only for
    train), and the command's result is the same."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("hello world, a tiny corpus. " * 200)
    cache = tmp_path / "cache"
    # the checkout first, then whatever the environment's PYTHONPATH holds (where a machine keeps packages)
    path = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = dict(os.environ, PYPHASE_COLDSTART="force", PYPHASE_PYCACHE=str(cache), PYTHONPATH=path)
    args = (["data", "stats", str(corpus), "--json"] if cmd == "data"
            else ["train", "smoke", "--device", "cpu", "--out", str(tmp_path / "runs"), "--no-progress"])
    out = subprocess.run([sys.executable, "-m", "pyphase", *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    cached = {p.parts[len(cache.parts):] for p in cache.rglob("*.pyc")}

    def cached_package(name: str) -> bool:
        # the cache mirrors each source's path: look under the package's own folder, not for its name
        # anywhere in a path (a machine's packages may live under, say, /opt/torch/.venv)
        origin = coldstart.module_origin(name)
        assert origin is not None, name
        folder = Path(origin).parent.parts[1:]
        return any(parts[: len(folder)] == folder for parts in cached)

    assert cached_package("numpy")
    assert cached_package("torch") == (cmd == "train")
    if cmd == "data":
        assert json.loads(out.stdout)["vocab_size"] > 0
