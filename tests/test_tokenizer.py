"""The Rust CharTokenizer and ngram_entropies through their bindings: vocabulary order, exact
round-trips of str/bytes/files, dtypes, unk handling, JSON persistence, pickling, every input error,
and the entropies of Tiny Shakespeare quoted in ../shared/data/README.md."""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from pyphase._core import CharTokenizer, ngram_entropies

TEXT = "To be, or not to be — that is the question:\nWhether 'tis nobler… 🙂 Ünïcödé\n" * 3


# ------------------------------------------------------------------------------ vocabulary
def test_vocab_is_sorted_distinct_code_points() -> None:
    tok = CharTokenizer.from_text(TEXT)
    assert tok.vocab == sorted(set(TEXT))
    assert tok.vocab_size == len(set(TEXT)) == len(tok)
    assert tok.dtype == "uint16" and tok.unk is None


def test_constructors_agree(tmp_path: Path) -> None:
    p = tmp_path / "c.txt"
    p.write_text(TEXT, encoding="utf-8")
    a = CharTokenizer.from_text(TEXT)
    assert CharTokenizer.from_bytes(TEXT.encode()) == a
    assert CharTokenizer.from_file(p) == a
    assert CharTokenizer.from_file(str(p)) == a
    assert CharTokenizer(a.vocab) == a


def test_explicit_vocab_keeps_order_and_appends_unk() -> None:
    tok = CharTokenizer(["z", "a", "é"], unk="?")
    assert tok.vocab == ["z", "a", "é", "?"] and tok.unk == "?"
    assert tok.encode("aé?z").tolist() == [1, 2, 3, 0]
    assert CharTokenizer(["z", "?"], unk="?").vocab == ["z", "?"]


def test_from_text_with_unk_includes_it_in_sorted_order() -> None:
    tok = CharTokenizer.from_text("cab", unk="\ufffd")
    assert tok.vocab == ["a", "b", "c", "\ufffd"] and tok.unk == "\ufffd"


@pytest.mark.parametrize(
    "vocab, unk, needle",
    [
        ([], None, "vocabulary is empty"),
        (["a", "bc"], None, "vocab entry 1 must be exactly one character, got \"bc\""),
        (["a", ""], None, "vocab entry 1 must be exactly one character"),
        (["a", "b", "a"], None, r"'a' \(U\+0061\) twice \(ids 0 and 2\)"),
        (["a"], "xy", "unk must be exactly one character, got \"xy\""),
    ],
)
def test_constructor_errors(vocab: list[str], unk: str | None, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        CharTokenizer(vocab, unk=unk)


def test_empty_corpus_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty text"):
        CharTokenizer.from_text("")


def test_invalid_utf8_names_byte_offset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"invalid UTF-8 at byte offset 4 \(bytes 0xff"):
        CharTokenizer.from_bytes(b"abcd\xffef")
    p = tmp_path / "bad.txt"
    p.write_bytes("héllo".encode() + b"\xc3")
    with pytest.raises(ValueError, match=r"bad\.txt: invalid UTF-8 at byte offset 6"):
        CharTokenizer.from_file(p)
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="invalid UTF-8 at byte offset 1"):
        tok.encode(b"a\x80")
    with pytest.raises(ValueError, match=r"bad\.txt: invalid UTF-8 at byte offset 6"):
        CharTokenizer.from_text("hélo").encode_file(p)


def test_missing_file_is_oserror_naming_it(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="nope.txt"):
        CharTokenizer.from_file(tmp_path / "nope.txt")
    with pytest.raises(OSError, match="nope.txt"):
        CharTokenizer.from_text("a").encode_file(tmp_path / "nope.txt")


# ------------------------------------------------------------------------------ encode / decode
def test_round_trip_str_bytes_and_file(tmp_path: Path) -> None:
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode(TEXT)
    assert ids.dtype == np.uint16 and ids.shape == (len(TEXT),)
    assert ids.tolist() == [tok.vocab.index(c) for c in TEXT]
    assert tok.decode(ids) == TEXT
    np.testing.assert_array_equal(tok.encode(TEXT.encode("utf-8")), ids)
    p = tmp_path / "t.txt"
    p.write_bytes(TEXT.encode("utf-8"))
    np.testing.assert_array_equal(tok.encode_file(p), ids)


def test_ascii_fast_path_boundaries() -> None:
    # Lengths around the 16-byte chunk, with a non-ASCII char at every position of a chunk.
    base = "abcdefghijklmnopqrstuvwxyz0123456789"
    tok = CharTokenizer.from_text(base + "é")
    for n in range(0, 40):
        s = base[:n]
        assert tok.decode(tok.encode(s)) == s
        if n:
            for k in range(n):
                t = s[:k] + "é" + s[k:]
                assert tok.decode(tok.encode(t)) == t


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int64, np.int32, np.uint8])
def test_decode_accepts_integer_arrays_and_lists(dtype: type) -> None:
    tok = CharTokenizer.from_text("hello world")
    ids = tok.encode("hello world")
    assert tok.decode(ids.astype(dtype)) == "hello world"
    assert tok.decode(ids.tolist()) == "hello world"
    assert tok.decode(ids.astype(dtype)[::2]) == "hello world"[::2]
    assert tok.decode([]) == ""


@pytest.mark.parametrize(
    "ids, needle",
    [
        ([0, 1, 8], "id 8 at position 2 is out of range for a vocabulary of 8"),
        (np.array([3, -1], np.int64), "id -1 at position 1"),
        (np.array([70000], np.uint32), "id 70000 at position 0"),
        ([2**40], "id 1099511627776 at position 0"),
    ],
)
def test_decode_rejects_out_of_range_ids(ids, needle: str) -> None:
    tok = CharTokenizer.from_text("hello world")  # 8 distinct characters
    with pytest.raises(ValueError, match=needle):
        tok.decode(ids)


def test_decode_large_uint16_arrays_round_trip_and_range_check() -> None:
    # Large uint16 inputs take a table-driven path in Rust; it must check ids as strictly.
    text = "plain ascii text, long enough\n" * 2000
    tok = CharTokenizer.from_text(text)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    ids[40_000] = tok.vocab_size
    with pytest.raises(ValueError, match=f"id {tok.vocab_size} at position 40000 is out of range"):
        tok.decode(ids)


def test_decode_non_ascii_vocab_range_check() -> None:
    tok = CharTokenizer.from_text("aé")
    with pytest.raises(ValueError, match="id 2 at position 0"):
        tok.decode([2])


def test_decode_rejects_non_integer_input() -> None:
    tok = CharTokenizer.from_text("ab")
    with pytest.raises(ValueError, match="ids must be a numpy integer array or a list of ints"):
        tok.decode(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="ids must be"):
        tok.decode("ab")


def test_unknown_char_error_names_char_code_and_offset() -> None:
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(ValueError, match=re.escape("character 'X' (U+0058) at byte offset 20 is not in the vocabulary")):
        tok.encode("abc abc abc abc abc Xabc")
    with pytest.raises(ValueError, match=re.escape("'é' (U+00E9) at byte offset 2")):
        tok.encode("ab\u00e9")
    with pytest.raises(ValueError, match=re.escape("'🙂' (U+1F642) at byte offset 3")):
        CharTokenizer.from_text("aé").encode("a\u00e9\U0001f642".encode())


def test_unk_mode_maps_unknown_chars() -> None:
    tok = CharTokenizer.from_text("abc ", unk="?")
    ids = tok.encode("abc abc abc abc abc Xé🙂c", unknown="unk")
    assert tok.decode(ids) == "abc abc abc abc abc ???c"
    assert len(ids) == 24


def test_unk_mode_without_unk_and_bad_mode_are_errors() -> None:
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="needs a tokenizer with an unk character"):
        tok.encode("abX", unknown="unk")
    with pytest.raises(ValueError, match='unknown must be "error" or "unk", got "skip"'):
        tok.encode("ab", unknown="skip")
    with pytest.raises(ValueError, match="data must be str or bytes"):
        tok.encode(["a"])


def test_large_vocab_uses_uint32() -> None:
    chars = [chr(c) for c in range(0x100, 0x100 + 70_000) if not 0xD800 <= c < 0xE000]
    tok = CharTokenizer(chars)
    assert tok.vocab_size > 65_536 and tok.dtype == "uint32"
    s = "".join(chars[65_530:65_545])
    ids = tok.encode(s)
    assert ids.dtype == np.uint32 and ids.tolist() == list(range(65_530, 65_545))
    assert tok.decode(ids) == s
    assert CharTokenizer(chars[:65_536]).dtype == "uint16"


# ------------------------------------------------------------------------------ persistence
def test_json_save_load_and_pickle(tmp_path: Path) -> None:
    tok = CharTokenizer.from_text(TEXT + '"\\', unk="\ufffd")
    again = CharTokenizer.from_json(tok.to_json())
    assert again == tok and again.vocab == tok.vocab and again.unk == "\ufffd"
    p = tmp_path / "vocab.json"
    tok.save(p)
    assert CharTokenizer.load(p) == tok
    assert pickle.loads(pickle.dumps(tok)) == tok
    assert tok != CharTokenizer.from_text(TEXT) and tok != "x"


@pytest.mark.parametrize(
    "text, needle",
    [
        ("{not json", "tokenizer JSON is malformed"),
        ('{"kind": "other", "version": 1, "vocab": ["a"]}', "kind"),
        ('{"kind": "pyphase.CharTokenizer", "version": 9, "vocab": ["a"]}', "version"),
        ('{"kind": "pyphase.CharTokenizer", "version": 1, "vocab": ["ab"]}', "vocab entry 0"),
    ],
)
def test_malformed_json_is_valueerror(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        CharTokenizer.from_json(text)
    p = tmp_path / "v.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=r"v\.json: .*" + needle):
        CharTokenizer.load(p)


# ------------------------------------------------------------------------------ entropies
def test_entropies_of_a_periodic_sequence() -> None:
    ids = np.tile(np.array([0, 1, 2], np.uint16), 1000)
    h = ngram_entropies(ids, 3)
    assert h[0] == pytest.approx(math.log(3), abs=1e-12)
    assert h[1] == pytest.approx(0.0, abs=1e-12) and h[2] == pytest.approx(0.0, abs=1e-12)


def test_entropies_of_iid_uniform_approach_log_v() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 8, 200_000).astype(np.uint32)
    h = ngram_entropies(ids, 3)
    # Plug-in bias of order (cells - 1) / (2 n): below 3e-3 nats here.
    for v in h:
        assert v == pytest.approx(math.log(8), abs=3e-3)


def test_entropies_match_a_numpy_reference() -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5, 5000) * rng.integers(1, 3, 5000)
    h = ngram_entropies(ids.astype(np.int64), 2)

    def plug_in(keys: np.ndarray) -> float:
        _, c = np.unique(keys, return_counts=True)
        p = c / c.sum()
        return float(-(p * np.log(p)).sum())

    assert h[0] == pytest.approx(plug_in(ids), abs=1e-12)
    pairs = ids[:-1] * 100 + ids[1:]
    assert h[1] == pytest.approx(plug_in(pairs) - plug_in(ids[:-1]), abs=1e-12)
    assert ngram_entropies(ids.tolist(), 1) == pytest.approx([h[0]], abs=1e-12)


@pytest.mark.parametrize(
    "ids, order, needle",
    [
        (np.array([1, 2], np.uint16), 0, "max_order must be at least 1"),
        (np.array([1, 2], np.uint16), 3, "need at least 3 tokens"),
        (np.array([1, -2], np.int64), 1, "id -2 at position 1"),
        (np.array([2**32 - 1, 0, 0], np.uint32), 3, "too high"),
        (np.array([0.5]), 1, "ids must be a numpy integer array"),
    ],
)
def test_entropies_errors(ids, order: int, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        ngram_entropies(ids, order)


def test_tinyshakespeare_entropies_match_shared_readme(tinyshakespeare: Path, shared_data: Path) -> None:
    readme = (shared_data / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if "tinyshakespeare/input.txt" in line)
    uni, bi = (float(v) for v in re.search(r"([\d.]+) / ([\d.]+) \|\s*$", row).groups())
    n_chars = int(re.search(r"\| (\d+) \| [\d.]+ / ", row).group(1))
    tok = CharTokenizer.from_file(tinyshakespeare)
    assert tok.vocab_size == n_chars
    ids = tok.encode_file(tinyshakespeare)
    assert tok.decode(ids) == tinyshakespeare.read_text(encoding="utf-8")
    h = ngram_entropies(ids, 3)
    assert round(h[0], 4) == uni and round(h[1], 4) == bi
    assert h[1] > h[2] > 0
