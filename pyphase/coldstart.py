"""A fresh process's heavy imports (torch, triton, numpy, polars) where Python keeps no bytecode for them.

Python caches each module's compiled bytecode in a `__pycache__` folder beside its source; pip
writes these at install time. Where they are missing and cannot be written (a read-only image or
site-packages, an image built with PYTHONDONTWRITEBYTECODE or `pip --no-compile`), every process
compiles the sources it imports again, one after another: `import torch` alone compiles ~750
modules (~14 MB of source), 2.8 s of this repository's 2-core CPU and ~3 s of `import torch`'s
4.4 s on the device's H100 image (results/bench/README.md). pyphase's CLI calls `start` first
thing; where a package's `__pycache__` is missing, it

- keeps that package's bytecode in a cache of its own (`$XDG_CACHE_HOME/pyphase/pycache`, else
  `~/.cache/...`; PYPHASE_PYCACHE sets it), through a finder placed before Python's own that hands
  those modules a `SourceFileLoader` reading and writing there: the next process loads, not
  compiles. Entries are Python's own timestamp-checked `.pyc` format (magic, flags, the source's
  mtime and size), so an edited or upgraded source is compiled again, never served stale;
- and, where the cache lacks entries and the machine has cores to spare, compiles that package's
  sources into it in the background with worker processes while this process goes on importing:
  whatever is written by the time a module is imported is loaded, the rest compiled here as
  before (writes are atomic: a temporary file renamed). The code objects are those `compile`
  gives Python's own loader (same source, file name and optimisation level).

Where every package has its `__pycache__` (an ordinary pip install) it does nothing. It never
changes what a module computes, only where its bytecode comes from. PYTHONDONTWRITEBYTECODE keeps
Python from writing beside the sources; this cache is pyphase's own, as Triton keeps compiled
kernels in `~/.triton`. PYPHASE_COLDSTART=0 turns it off; PYPHASE_COLDSTART=force applies it even
to packages with a `__pycache__` (tests, benches). Only the standard library is imported here.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import marshal
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence

# The top-level modules a command imports, by name: the CLI's own (typer and what typer brings,
# which varies with its version; absent ones are skipped), numpy and polars for every command, and
# torch and Triton for those that train.
CLI_PACKAGES = ("typer", "click", "rich", "pydantic", "pydantic_core", "annotated_types", "annotated_doc",
                "typing_inspection", "typing_extensions", "shellingham", "tqdm", "numpy", "polars")
TORCH_PACKAGES = ("torch", "torchgen", "triton")
PACKAGES = TORCH_PACKAGES + CLI_PACKAGES
TORCH_COMMANDS = ("train", "calibrate")
# Parts of these packages no pyphase command imports (torch.compile's and the test tooling's);
# left out of the background compile only (a module of them that is imported is cached as any).
SKIP_DIRS = frozenset({"_inductor", "_dynamo", "testing", "tests", "onnx", "_numpy", "benchmarks", "_vendor",
                       "include", "share"})
_MAGIC = importlib.util.MAGIC_NUMBER
_ACTIVE: "Warmup | None" = None


def cache_root() -> str:
    """Where the bytecode goes: PYPHASE_PYCACHE, else `$XDG_CACHE_HOME` or `~/.cache`, `pyphase/pycache`."""
    explicit = os.environ.get("PYPHASE_PYCACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyphase", "pycache")


def cache_path(root: str, source: str) -> str:
    """The cache file of `source` under `root`: its absolute path mirrored there, with the
    interpreter's tag and optimisation level as in Python's own file names."""
    opt = sys.flags.optimize
    tag = sys.implementation.cache_tag + (f".opt-{opt}" if opt else "")
    return os.path.join(root, os.path.abspath(source).lstrip(os.sep)) + f".{tag}.pyc"


def _header(st: os.stat_result) -> bytes:
    """The 16-byte header of a timestamp `.pyc` (magic, flags 0, the source's mtime and size) of a
    source with stat `st`."""
    return b"".join((_MAGIC, (0).to_bytes(4, "little"), (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little"),
                     (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")))


def read_cached(cfile: str, source: str, st: os.stat_result | None = None) -> object | None:
    """The code object in `cfile` if it is a valid timestamp `.pyc` of `source` as it is now (or as
    `st`, its stat), else None."""
    try:
        st = st or os.stat(source)
        with open(cfile, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if data[:16] != _header(st):
        return None
    try:
        return marshal.loads(memoryview(data)[16:])
    except (EOFError, ValueError, TypeError):
        return None


def compile_source(source: str) -> object:
    """`source` compiled as Python's loader compiles it for import."""
    with open(source, "rb") as f:
        data = f.read()
    return compile(data, source, "exec", dont_inherit=True, optimize=-1)


def write_cached(cfile: str, source: str, code: object, st: os.stat_result | None = None) -> None:
    """Write `code` as a timestamp `.pyc` of `source` (stamped with `st`, its stat taken before it
    was read, as Python's loader does) to `cfile` atomically; failures are ignored (the cache is an
    optimisation: an unwritable place only means compiling next time too)."""
    try:
        st = st or os.stat(source)
        data = _header(st) + marshal.dumps(code)
        os.makedirs(os.path.dirname(cfile), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(cfile), prefix=".tmp-", suffix=".pyc")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, cfile)
        except BaseException:
            os.unlink(tmp)
            raise
    except (OSError, ValueError):
        pass


def cached_code(root: str, source: str) -> tuple[object, bool]:
    """`source`'s code object from the cache at `root`, or compiled and written there; and whether
    it was compiled. Raises OSError where the source cannot be read, SyntaxError where it is no Python."""
    st = os.stat(source)
    cfile = cache_path(root, source)
    code = read_cached(cfile, source, st)
    if code is not None:
        return code, False
    code = compile_source(source)
    write_cached(cfile, source, code, st)
    return code, True


class CachedSourceLoader(importlib.machinery.SourceFileLoader):
    """Python's source loader with the bytecode in pyphase's cache instead of `__pycache__`."""

    root = ""

    def get_code(self, fullname: str) -> object:
        try:
            return cached_code(self.root, self.get_filename(fullname))[0]
        except OSError:  # the source cannot be read: Python's own loader says so
            return super().get_code(fullname)


class CacheFinder:
    """A meta-path finder for the top-level modules named in `roots` and their submodules: Python's
    path finder finds them, and their source files get a `CachedSourceLoader` with the cache at `root`."""

    def __init__(self, roots: Sequence[str], root: str) -> None:
        self.roots = frozenset(roots)
        self.loader = type("Loader", (CachedSourceLoader,), {"root": root})

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: object = None):
        if fullname.partition(".")[0] not in self.roots:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader:
            spec.loader = self.loader(spec.loader.name, spec.loader.path)
        return spec

    def invalidate_caches(self) -> None:
        pass


def packages_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The packages the CLI command in `argv` (without the program name) will import."""
    command = next((a for a in argv if not a.startswith("-")), "")
    return PACKAGES if command in TORCH_COMMANDS else CLI_PACKAGES


def module_origin(name: str) -> str | None:
    """The source file of top-level module `name` (a package's `__init__.py`), found without
    importing it; None if absent or not Python source."""
    try:
        spec = importlib.machinery.PathFinder.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return spec.origin


def module_sources(origin: str) -> list[str]:
    """The files to compile ahead for a top-level module: a package's sources (`sources`), or the file."""
    if os.path.basename(origin) == "__init__.py":
        return sources(os.path.dirname(origin))
    return [origin]


def sources(folder: str) -> list[str]:
    """The `.py` files of a package folder worth compiling ahead, outside SKIP_DIRS."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and d != "__pycache__")
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(".py"))
    return out


def compile_listed(root: str, files: Sequence[str]) -> int:
    """Compile each of `files` into the cache at `root` where its entry is missing or stale
    (a worker's job); returns how many were written."""
    n = 0
    for source in files:
        try:
            n += cached_code(root, source)[1]
        except (OSError, SyntaxError, ValueError):
            continue
    return n


class Warmup:
    """What `start` set up: the finder (None if nothing needed it) and the worker processes."""

    def __init__(self, finder: CacheFinder | None, procs: list[subprocess.Popen], files: int) -> None:
        self.finder, self.procs, self.files = finder, procs, files

    def wait(self) -> None:
        """Wait for the background compiles (tests, benches; the CLI never waits)."""
        for p in self.procs:
            p.wait()


def start(packages: Sequence[str] = PACKAGES, *, workers: int | None = None, force: bool | None = None,
          root: str | None = None) -> Warmup:
    """Set up the cache for those of `packages` (top-level modules) that have no `__pycache__` (all
    of them with `force`) and start compiling the sources of those not yet imported into it in the
    background (an imported one's later submodules are still cached); once per process
    (later calls return the first call's result). `workers`: processes for the background compile
    (default: the CPUs less one, none on a machine of fewer than 4 or in a torchrun process of
    local rank > 0), at most one per 20 files."""
    global _ACTIVE
    if _ACTIVE is not None:
        return _ACTIVE
    mode = os.environ.get("PYPHASE_COLDSTART", "1").strip().lower()
    if force is None:
        force = mode == "force"
    if mode in ("0", "off", "false", "no") or sys.pycache_prefix is not None:
        _ACTIVE = Warmup(None, [], 0)
        return _ACTIVE
    roots = {}  # name -> origin, of the modules without bytecode beside them
    for name in packages:
        origin = module_origin(name)
        if origin is not None and (force or not os.path.exists(importlib.util.cache_from_source(origin))):
            roots[name] = origin
    root = root or cache_root()
    if not roots or not _writable(root):
        _ACTIVE = Warmup(None, [], 0)
        return _ACTIVE
    finder = CacheFinder(roots, root)
    sys.meta_path.insert(0, finder)
    files = [f for name, origin in roots.items() if name not in sys.modules for f in module_sources(origin)
             if not os.path.exists(cache_path(root, f))]
    ncpu = os.cpu_count() or 1
    if workers is None:  # under torchrun, one process a node compiles ahead (the others use its cache)
        workers = ncpu - 1 if ncpu >= 4 and os.environ.get("LOCAL_RANK", "0") == "0" else 0
    n = min(workers, len(files) // 20)
    procs = _spawn(root, files, n) if n > 0 else []
    _ACTIVE = Warmup(finder, procs, len(files))
    return _ACTIVE


def _writable(root: str) -> bool:
    try:
        os.makedirs(root, exist_ok=True)
        return os.access(root, os.W_OK)
    except OSError:
        return False


def _spawn(root: str, files: list[str], n: int) -> list[subprocess.Popen]:
    """n worker interpreters compiling every n-th file of `files` (biggest first, so they finish
    together); each imports only this module (by path, not the pyphase package) and the stdlib."""
    files = sorted(files, key=lambda f: -_size(f))
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('pyphase_coldstart_worker', {os.path.abspath(__file__)!r})\n"
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
            "m.compile_listed(sys.argv[1], sys.stdin.read().splitlines())\n")
    procs = []
    for i in range(n):
        try:
            # The parent's -O level: the same cache file names and code.
            opt = ["-" + "O" * sys.flags.optimize] if sys.flags.optimize else []
            p = subprocess.Popen([sys.executable, "-S", *opt, "-c", code, root], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)
        except OSError:
            break
        try:
            assert p.stdin is not None
            p.stdin.write("\n".join(files[i::n]).encode())
            p.stdin.close()
        except OSError:
            pass
        procs.append(p)
    return procs


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
