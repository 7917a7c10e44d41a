"""Tokenizer and batcher speed against the code a user would otherwise write, in one run.

encode: nanoGPT's `[stoi[c] for c in text]`; numpy (UTF-32 view + lookup table); Rust `encode`.
decode: nanoGPT's `''.join(itos[i] for i in ids)`; numpy (lookup + UTF-32 decode); Rust `decode`.
batch (B = T = 256, x and y): nanoGPT's torch.stack of slices; numpy fancy indexing
`data[ix[:, None] + arange(T + 1)]` (uint16 windows only, the issue's baseline) and the same plus
int64 x/y; Rust `sample_batch` (new arrays), `sample_packed` and `gather_windows` into buffers.

Every method is checked against the others for identical output, then timed: the median over
`--repeats` runs (batch: each run is the mean of 200 calls at fresh random offsets), and the minimum. Prints a
table with MB/s, milliseconds and Rust's speed-up. Usage:
    python benches/bench_text.py [--mb 11] [--repeats 5] [--data FILE] [--json]
The text is FILE (default: ../shared/data/tinyshakespeare/input.txt, else the synthetic corpus)
repeated to about --mb megabytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pyphase import _core
from pyphase.data import synthetic_corpus

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"encode_mb_per_s": 1000.0, "decode_mb_per_s": 500.0, "batch_speedup_vs_numpy": 5.0}


def default_text_file() -> Path | None:
    shared = Path(os.environ["PYPHASE_SHARED"]) if "PYPHASE_SHARED" in os.environ else REPO.parent / "shared"
    for p in (shared / "data" / "tinyshakespeare" / "input.txt", shared / "tinyshakespeare" / "input.txt"):
        if p.is_file():
            return p
    return None


def build_text(path: Path | None, mb: float) -> tuple[str, str]:
    if path is not None:
        base, name = path.read_text(encoding="utf-8"), path.name
    else:
        base, name = synthetic_corpus(1_000_000, 0).text, "synthetic"
    reps = max(1, round(mb * 1e6 / len(base.encode("utf-8"))))
    return base * reps, f"{name} x{reps}"


def time_runs(fn: Callable[[], Any], repeats: int, calls: int = 1) -> tuple[float, float]:
    """(median, min) over `repeats` of the mean seconds per call of `fn`, after one warm-up call.
    The minimum is printed too: on a shared machine it is the figure least disturbed by others."""
    fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - t0) / calls)
    return statistics.median(runs), min(runs)


def _time_methods(task: str, methods: list[tuple[str, Callable[[], Any], int]], n_bytes: int) -> list[dict[str, Any]]:
    """Time each (name, fn, repeats) of one task over the same `n_bytes` of text: one row each."""
    rows = []
    for name, fn, reps in methods:
        t, best = time_runs(fn, reps)
        rows.append({"task": task, "method": name, "ms": t * 1e3, "min_ms": best * 1e3, "mb_per_s": n_bytes / t / 1e6})
    return rows


def bench_encode(text: str, tok: _core.CharTokenizer, repeats: int) -> list[dict[str, Any]]:
    stoi = {ch: i for i, ch in enumerate(tok.vocab)}
    lut = np.zeros(max(map(ord, tok.vocab)) + 1, dtype=np.uint16)
    lut[[ord(c) for c in tok.vocab]] = np.arange(tok.vocab_size)

    def nanogpt() -> list[int]:
        return [stoi[c] for c in text]

    def numpy_lut() -> np.ndarray:
        return lut[np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)]

    def rust() -> np.ndarray:
        return tok.encode(text)

    ref = rust()
    assert np.array_equal(numpy_lut(), ref) and nanogpt() == ref.tolist(), "encoders disagree"
    return _time_methods("encode", [
        ("[stoi[c] for c in text] (nanoGPT)", nanogpt, max(1, repeats // 2)),
        ("numpy utf-32 view + lookup table", numpy_lut, repeats),
        ("rust CharTokenizer.encode", rust, repeats),
    ], len(text.encode("utf-8")))


def bench_decode(text: str, tok: _core.CharTokenizer, repeats: int) -> list[dict[str, Any]]:
    ids = tok.encode(text)
    ids_list = ids.tolist()
    itos = dict(enumerate(tok.vocab))
    code_points = np.array([ord(c) for c in tok.vocab], dtype=np.uint32)

    def nanogpt() -> str:
        return "".join([itos[i] for i in ids_list])

    def numpy_lut() -> str:
        return code_points[ids].tobytes().decode("utf-32-le")

    def rust() -> str:
        return tok.decode(ids)

    assert nanogpt() == numpy_lut() == rust() == text, "decoders disagree"
    return _time_methods("decode", [
        ("''.join(itos[i] for i in ids) (nanoGPT)", nanogpt, max(1, repeats // 2)),
        ("numpy lookup + utf-32 decode", numpy_lut, repeats),
        ("rust CharTokenizer.decode", rust, repeats),
    ], len(text.encode("utf-8")))


def bench_batch(ids: np.ndarray, b: int, t: int, repeats: int, calls: int = 200) -> list[dict[str, Any]]:
    n = len(ids)
    rng = np.random.default_rng(0)
    arange = np.arange(t + 1)
    step = [0]
    out_x = np.empty((1, b, t), np.int64)
    out_y = np.empty((1, b, t), np.int64)
    offsets = _core.batch_offsets(n, t, b, [0], 0, calls + 1)  # precomputed, as the trainer does

    def numpy_windows() -> np.ndarray:
        ix = rng.integers(0, n - t - 1, b)
        return ids[ix[:, None] + arange]

    def numpy_xy() -> tuple[np.ndarray, np.ndarray]:
        w = numpy_windows()
        return w[:, :-1].astype(np.int64), w[:, 1:].astype(np.int64)

    def rust_new() -> tuple[np.ndarray, np.ndarray]:
        step[0] += 1
        return _core.sample_batch(ids, t, b, 0, step[0])

    def rust_packed() -> tuple[np.ndarray, np.ndarray]:
        step[0] += 1
        return _core.sample_packed(ids, t, b, [0], step[0], out_x=out_x, out_y=out_y)

    def rust_gather() -> tuple[np.ndarray, np.ndarray]:
        step[0] = (step[0] + 1) % (calls + 1)
        return _core.gather_windows(ids, offsets[step[0]], t, out_x=out_x, out_y=out_y)

    methods: list[tuple[str, Callable[[], Any]]] = []
    try:
        import torch

        data_np = ids

        def nanogpt() -> tuple[Any, Any]:
            ix = torch.randint(n - t, (b,))
            x = torch.stack([torch.from_numpy(data_np[i : i + t].astype(np.int64)) for i in ix])
            y = torch.stack([torch.from_numpy(data_np[i + 1 : i + 1 + t].astype(np.int64)) for i in ix])
            return x, y

        methods.append(("torch.stack of slices (nanoGPT get_batch)", nanogpt))
    except ImportError:
        pass
    methods += [
        ("numpy data[ix[:,None]+arange(T+1)] (uint16)", numpy_windows),
        ("numpy fancy index + int64 x, y", numpy_xy),
        ("rust sample_batch (new arrays)", rust_new),
        ("rust sample_packed K=1 (into buffers)", rust_packed),
        ("rust gather_windows (offsets precomputed)", rust_gather),
    ]
    # Same windows from every path: Rust x/y equal slicing at its own offsets.
    x, y = _core.sample_batch(ids, t, b, 0, 12345)
    o = _core.batch_offsets(n, t, b, [0], 12345, 1)[0, 0]
    w = ids[o[:, None] + arange].astype(np.int64)
    assert np.array_equal(x, w[:, :-1]) and np.array_equal(y, w[:, 1:]), "batcher disagrees with slicing"
    rows = []
    for name, fn in methods:
        sec, best = time_runs(fn, repeats, calls)
        rows.append({"task": f"batch B={b} T={t}", "method": name, "ms": sec * 1e3, "min_ms": best * 1e3, "mb_per_s": None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=11.0, help="text size in MB (the file is repeated)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data", type=Path, default=None, help="UTF-8 text file (default: Tiny Shakespeare)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    if args.repeats < 1 or args.mb <= 0 or args.batch < 1 or args.block < 1:
        ap.error("--repeats, --batch and --block must be >= 1 and --mb > 0")
    if args.data is not None and not args.data.is_file():
        ap.error(f"--data {args.data}: no such file")

    text, label = build_text(args.data or default_text_file(), args.mb)
    tok = _core.CharTokenizer.from_text(text)
    ids = tok.encode(text)
    rows = bench_encode(text, tok, args.repeats) + bench_decode(text, tok, args.repeats)
    rows += bench_batch(ids, args.batch, args.block, args.repeats)

    def rust_ms(task: str, prefix: str) -> float:
        return next(r["ms"] for r in rows if r["task"] == task and r["method"].startswith(prefix))

    for r in rows:
        best = rust_ms(r["task"], "rust sample_packed" if r["task"].startswith("batch") else "rust")
        r["rust_speedup"] = r["ms"] / best
    batch_task = rows[-1]["task"]
    numpy_ms = next(r["ms"] for r in rows if r["method"].startswith("numpy data["))
    summary = {
        "encode_mb_per_s": next(r["mb_per_s"] for r in rows if r["method"] == "rust CharTokenizer.encode"),
        "decode_mb_per_s": next(r["mb_per_s"] for r in rows if r["method"] == "rust CharTokenizer.decode"),
        "batch_speedup_vs_numpy": numpy_ms / rust_ms(batch_task, "rust sample_packed"),
        "batch_speedup_vs_numpy_new_arrays": numpy_ms / rust_ms(batch_task, "rust sample_batch"),
    }
    meta = {"text": label, "mb": len(text.encode("utf-8")) / 1e6, "chars": len(text), "vocab": tok.vocab_size,
            "cpus": os.cpu_count(), "repeats": args.repeats}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows, "summary": summary, "targets": TARGETS}, indent=2))
        return
    print(f"text: {label} = {meta['mb']:.2f} MB, {len(text):,} chars, vocab {tok.vocab_size}; "
          f"{meta['cpus']} CPUs; median of {args.repeats} runs")
    print(f"{'task':<18} {'method':<44} {'ms':>10} {'min ms':>10} {'MB/s':>8} {'rust x':>8}")
    for r in rows:
        mbs = f"{r['mb_per_s']:,.0f}" if r["mb_per_s"] is not None else ""
        print(f"{r['task']:<18} {r['method']:<44} {r['ms']:>10.3f} {r['min_ms']:>10.3f} {mbs:>8} {r['rust_speedup']:>8.1f}")
    print("ms = median, MB/s from the median; 'rust x' = this method's median / Rust's "
          "(batch: sample_packed into buffers).")
    for key, target in TARGETS.items():
        got = summary[key]
        print(f"target {key}: {got:,.1f} (>= {target:g}) {'met' if got >= target else 'NOT met'}")
    print(f"batch_speedup_vs_numpy_new_arrays: {summary['batch_speedup_vs_numpy_new_arrays']:.1f}")


if __name__ == "__main__":
    main()
