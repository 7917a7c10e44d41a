"""The Rust batcher through its bindings: counter-based offsets, window gathering into new or
caller buffers, packed streams, evaluation windows, and every input error."""

from __future__ import annotations

import numpy as np
import pytest

from pyphase import _core
from pyphase.data import eval_batches


def windows_by_slicing(tokens: np.ndarray, offsets: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    flat = offsets.reshape(-1)
    x = np.stack([tokens[o : o + block] for o in flat]).astype(np.int64)
    y = np.stack([tokens[o + 1 : o + block + 1] for o in flat]).astype(np.int64)
    return x.reshape(offsets.shape + (block,)), y.reshape(offsets.shape + (block,))


# ------------------------------------------------------------------------------ offsets
def test_batch_offsets_shape_dtype_and_range() -> None:
    o = _core.batch_offsets(100, 10, 64, [1, 2, 3], 5, 7)
    assert o.shape == (7, 3, 64) and o.dtype == np.int64
    assert o.min() >= 0 and o.max() <= 100 - 10 - 1


def test_batch_offsets_reach_both_ends_of_the_range() -> None:
    o = _core.batch_offsets(30, 10, 2000, [0], 0, 1)
    assert o.min() == 0 and o.max() == 19


def test_batch_offsets_are_roughly_uniform() -> None:
    o = _core.batch_offsets(111, 10, 100_000, [4], 0, 1).ravel()
    counts = np.bincount(o, minlength=101)
    assert len(counts) == 101
    # 101 bins of expected ~990 each: a chi-square far above its ~100 degrees of freedom means bias.
    chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum()
    assert chi2 < 200


def test_batch_offsets_regenerate_any_step_for_resume() -> None:
    full = _core.batch_offsets(10_000, 32, 8, [11, 12], 0, 20)
    for step in (0, 7, 19):
        again = _core.batch_offsets(10_000, 32, 8, [11, 12], step, 1)
        np.testing.assert_array_equal(full[step], again[0])


def test_batch_offsets_stream_independent_of_its_neighbours() -> None:
    packed = _core.batch_offsets(10_000, 32, 8, [11, 12, 13], 3, 4)
    alone = _core.batch_offsets(10_000, 32, 8, [12], 3, 4)
    np.testing.assert_array_equal(packed[:, 1], alone[:, 0])


def test_batch_offsets_known_values_pin_the_generator() -> None:
    # Same seed gives the same batches on every machine: these values come from derive() +
    # xoshiro256++ + Lemire's bounded draw, all integer arithmetic. A change of generator would
    # silently change every experiment's data order, so it must fail here.
    assert _core.batch_offsets(1_000_000, 64, 4, [0], 0, 1).ravel().tolist() == [557540, 690653, 569875, 83133]
    assert _core.batch_offsets(1_000_000, 64, 4, [42], 1000, 1).ravel().tolist() == [870551, 308974, 866859, 242820]


def test_batch_offsets_zero_steps_is_empty() -> None:
    assert _core.batch_offsets(100, 10, 4, [0, 1], 0, 0).shape == (0, 2, 4)


@pytest.mark.parametrize(
    "args, needle",
    [
        ((10, 10, 1, [0], 0, 1), "block 10 must be smaller than the number of tokens 10"),
        ((10, 12, 1, [0], 0, 1), "block 12 must be smaller than the number of tokens 10"),
        ((10, 0, 1, [0], 0, 1), "block must be at least 1"),
        ((10, 3, 0, [0], 0, 1), "batch must be at least 1"),
        ((10, 3, 1, [], 0, 1), "seeds"),
        ((10, 3, 1, [-1], 0, 1), "seeds must be a list of integers"),
        ((10, 3, 1, [0], 2**64 - 1, 2), "overflows"),
    ],
)
def test_batch_offsets_errors(args: tuple, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        _core.batch_offsets(*args)


# ------------------------------------------------------------------------------ gather
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int64])
def test_gather_windows_equals_slices(tokens_u16: np.ndarray, dtype: type) -> None:
    tokens = tokens_u16.astype(dtype)
    offs = _core.batch_offsets(len(tokens), 17, 5, [3, 4], 0, 2)
    x, y = _core.gather_windows(tokens, offs, 17)
    ex, ey = windows_by_slicing(tokens, offs, 17)
    assert x.shape == (2, 2, 5, 17) and x.dtype == np.int64
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(y, ey)


def test_gather_windows_large_parallel_path(tokens_u16: np.ndarray) -> None:
    offs = _core.batch_offsets(len(tokens_u16), 256, 512, [9], 0, 1)[0, 0]
    x, y = _core.gather_windows(tokens_u16, offs, 256)
    ex, ey = windows_by_slicing(tokens_u16, offs, 256)
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(y, ey)


def test_gather_windows_writes_into_caller_buffers(tokens_u16: np.ndarray) -> None:
    offs = np.array([0, 5, len(tokens_u16) - 9], dtype=np.int64)
    bx = np.full((3, 8), -1, dtype=np.int64)
    by = np.full((3, 8), -1, dtype=np.int64)
    x, y = _core.gather_windows(tokens_u16, offs, 8, out_x=bx, out_y=by)
    assert x is bx and y is by
    ex, ey = windows_by_slicing(tokens_u16, offs, 8)
    np.testing.assert_array_equal(bx, ex)
    np.testing.assert_array_equal(by, ey)


def test_gather_windows_accepts_non_contiguous_offsets(tokens_u16: np.ndarray) -> None:
    offs = np.arange(0, 200, dtype=np.int64)[::7]
    x, _ = _core.gather_windows(tokens_u16, offs, 4)
    np.testing.assert_array_equal(x, windows_by_slicing(tokens_u16, offs, 4)[0])


def test_gather_windows_last_valid_offset_and_first_invalid(tokens_u16: np.ndarray) -> None:
    n = len(tokens_u16)
    _core.gather_windows(tokens_u16, np.array([n - 9], dtype=np.int64), 8)
    with pytest.raises(ValueError, match=f"offset {n - 8} "):
        _core.gather_windows(tokens_u16, np.array([n - 8], dtype=np.int64), 8)
    with pytest.raises(ValueError, match="offset -3 "):
        _core.gather_windows(tokens_u16, np.array([0, -3], dtype=np.int64), 8)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda s: (np.empty(s, np.int32), np.empty(s, np.int64)), "out_x must be a numpy int64 array"),
        (lambda s: (np.empty(s, np.int64), [0] * 8), "out_y must be a numpy int64 array"),
        (lambda s: (np.empty((2, 8), np.int64), np.empty(s, np.int64)), r"out_x has shape \[2, 8\], expected \[3, 8\]"),
        (lambda s: (np.empty(s, np.int64), np.empty((3, 9), np.int64)), "out_y has shape"),
        (lambda s: (np.empty((8, 3), np.int64).T, np.empty(s, np.int64)), "out_x must be C-contiguous"),
    ],
)
def test_gather_windows_rejects_bad_buffers(tokens_u16: np.ndarray, make, needle: str) -> None:
    bx, by = make((3, 8))
    with pytest.raises(ValueError, match=needle):
        _core.gather_windows(tokens_u16, np.array([0, 1, 2], dtype=np.int64), 8, out_x=bx, out_y=by)


def test_gather_windows_rejects_read_only_and_aliased_buffers(tokens_u16: np.ndarray) -> None:
    offs = np.array([0, 1], dtype=np.int64)
    ro = np.empty((2, 4), np.int64)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out_x is not writeable"):
        _core.gather_windows(tokens_u16, offs, 4, out_x=ro, out_y=np.empty((2, 4), np.int64))
    same = np.empty((2, 4), np.int64)
    with pytest.raises(ValueError, match="out_y is not writeable or is the same array"):
        _core.gather_windows(tokens_u16, offs, 4, out_x=same, out_y=same)


def test_gather_windows_rejects_bad_tokens() -> None:
    offs = np.array([0], dtype=np.int64)
    with pytest.raises(ValueError, match="tokens must be a numpy array of uint16"):
        _core.gather_windows(np.zeros(10, np.float32), offs, 2)
    with pytest.raises(ValueError, match="tokens must be a numpy array"):
        _core.gather_windows([1, 2, 3], offs, 2)
    with pytest.raises(ValueError, match="1-D"):
        _core.gather_windows(np.zeros((5, 5), np.uint16), offs, 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.gather_windows(np.zeros(20, np.uint16)[::2], offs, 2)
    with pytest.raises(ValueError, match="block 10 must be smaller"):
        _core.gather_windows(np.zeros(10, np.uint16), offs, 10)


# ------------------------------------------------------------------------------ sample
def test_sample_batch_is_gather_of_batch_offsets(tokens_u16: np.ndarray) -> None:
    x, y = _core.sample_batch(tokens_u16, 32, 6, 7, 13)
    offs = _core.batch_offsets(len(tokens_u16), 32, 6, [7], 13, 1)[0, 0]
    ex, ey = windows_by_slicing(tokens_u16, offs, 32)
    assert x.shape == (6, 32)
    np.testing.assert_array_equal(x, ex)
    np.testing.assert_array_equal(y, ey)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])


def test_sample_batch_same_seed_same_batch_different_step_differs(tokens_u16: np.ndarray) -> None:
    a = _core.sample_batch(tokens_u16, 32, 6, 7, 13)[0]
    np.testing.assert_array_equal(a, _core.sample_batch(tokens_u16, 32, 6, 7, 13)[0])
    assert not np.array_equal(a, _core.sample_batch(tokens_u16, 32, 6, 7, 14)[0])
    assert not np.array_equal(a, _core.sample_batch(tokens_u16, 32, 6, 8, 13)[0])


def test_sample_packed_stream_k_equals_sample_batch(tokens_u16: np.ndarray) -> None:
    seeds = [5, 0, 2**63 + 1]
    x, y = _core.sample_packed(tokens_u16, 16, 4, seeds, 9)
    assert x.shape == (3, 4, 16)
    for k, s in enumerate(seeds):
        sx, sy = _core.sample_batch(tokens_u16, 16, 4, s, 9)
        np.testing.assert_array_equal(x[k], sx)
        np.testing.assert_array_equal(y[k], sy)


def test_sample_packed_into_caller_buffers(tokens_u16: np.ndarray) -> None:
    bx = np.empty((2, 4, 16), np.int64)
    by = np.empty((2, 4, 16), np.int64)
    x, y = _core.sample_packed(tokens_u16, 16, 4, [1, 2], 3, out_x=bx, out_y=by)
    assert x is bx and y is by
    ex, ey = _core.sample_packed(tokens_u16, 16, 4, [1, 2], 3)
    np.testing.assert_array_equal(bx, ex)
    np.testing.assert_array_equal(by, ey)
    with pytest.raises(ValueError, match="out_x has shape"):
        _core.sample_packed(tokens_u16, 16, 4, [1, 2, 3], 3, out_x=bx, out_y=by)


@pytest.mark.parametrize(
    "block, batch, seeds, needle",
    [
        (10, 1, [0], "block 10 must be smaller than the number of tokens 10"),
        (3, 0, [0], "batch must be at least 1"),
        (3, 1, [], "seeds"),
    ],
)
def test_sample_errors(block: int, batch: int, seeds: list[int], needle: str) -> None:
    t = np.arange(10, dtype=np.uint16)
    with pytest.raises(ValueError, match=needle):
        _core.sample_packed(t, block, batch, seeds, 0)
    if seeds:
        with pytest.raises(ValueError, match=needle):
            _core.sample_batch(t, block, batch, seeds[0], 0)


# ------------------------------------------------------------------------------ eval
@pytest.mark.parametrize("n, block", [(2, 1), (11, 5), (12, 5), (13, 5), (1000, 64), (1001, 1000)])
def test_eval_offsets_cover_each_target_once(n: int, block: int) -> None:
    o = _core.eval_offsets(n, block)
    np.testing.assert_array_equal(o, np.arange(len(o)) * block)
    covered = len(o) * block
    assert n - 1 - covered < block  # only a partial window is left out
    hits = np.zeros(n, int)
    for s in o:
        hits[s + 1 : s + block + 1] += 1
    assert (hits[1 : covered + 1] == 1).all() and (hits[covered + 1 :] == 0).all()


def test_eval_offsets_errors() -> None:
    with pytest.raises(ValueError, match="block 5 must be smaller than the number of tokens 5"):
        _core.eval_offsets(5, 5)
    with pytest.raises(ValueError, match="block must be at least 1"):
        _core.eval_offsets(5, 0)


def test_sizes_beyond_memory_are_value_errors_not_a_crash(tokens_u16: np.ndarray) -> None:
    """Sizes that fit in 64 bits but not in memory: a ValueError before any allocation (they used to
    abort the interpreter, or raise PanicException)."""
    offs = np.array([0, 5], dtype=np.int64)
    for call in (
        lambda: _core.eval_offsets(2**40, 1),
        lambda: _core.eval_offsets(2**62, 1),
        lambda: _core.batch_offsets(100, 8, 2**36, [0], 0, 1),
        lambda: _core.sample_batch(tokens_u16, 8, 2**33, 0, 0),
        lambda: _core.sample_packed(tokens_u16, 8, 2**36, [0], 0),
    ):
        with pytest.raises(ValueError, match="is too large"):
            call()
    with pytest.raises(ValueError, match="block 8589934592 must be smaller than the number of tokens"):
        _core.gather_windows(tokens_u16, offs, 2**33)
    with pytest.raises(ValueError, match="block must be at least 1, got 0"):
        _core.gather_windows(tokens_u16, offs, 0)


@pytest.mark.parametrize("shape", [(0,), (0, 3), (2, 0)])
def test_gather_windows_of_no_offsets_gives_empty_arrays(tokens_u16: np.ndarray, shape: tuple[int, ...]) -> None:
    x, y = _core.gather_windows(tokens_u16, np.zeros(shape, dtype=np.int64), 8)
    assert x.shape == y.shape == shape + (8,) and x.dtype == y.dtype == np.int64


@pytest.mark.parametrize("n, block, batch", [(1000, 16, 7), (1000, 16, 100), (17, 16, 3), (333, 10, 1)])
def test_eval_batches_cover_split_exactly_once(n: int, block: int, batch: int) -> None:
    tokens = (np.arange(n) * 31 % 997).astype(np.uint16)
    xs, ys = zip(*eval_batches(tokens, block, batch))
    assert all(len(x) <= batch for x in xs) and all(x.shape[1] == block for x in xs)
    y = np.concatenate([b.ravel() for b in ys])
    x = np.concatenate([b.ravel() for b in xs])
    np.testing.assert_array_equal(y, tokens[1 : 1 + len(y)])
    np.testing.assert_array_equal(x, tokens[: len(y)])
    assert len(y) == (n - 1) // block * block


def test_eval_batches_errors() -> None:
    t = np.arange(10, dtype=np.uint16)
    with pytest.raises(ValueError, match="batch must be at least 1"):
        list(eval_batches(t, 3, 0))
    with pytest.raises(ValueError, match="block 10 must be smaller"):
        list(eval_batches(t, 10, 2))
