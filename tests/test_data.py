"""pyphase.data: the synthetic corpus against its closed-form entropies, loading files and
WikiText-2 folders (splits, vocabulary, checksums, env variable, every input error), corpus
statistics, and `fetch` against a local HTTP server (checksum verified before unpacking)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pyphase import _core, data
from pyphase.data import Archive, load_corpus, synthetic_corpus
from pyphase.errors import PyphaseError


# ------------------------------------------------------------------------------ synthetic corpus
def test_synthetic_is_deterministic_and_seeded() -> None:
    a = synthetic_corpus(2000, 0)
    assert a.text == synthetic_corpus.__wrapped__(2000, 0).text  # recomputed, not the cached object
    assert len(a.text) == 2000 and set(a.text) <= set(data.SYNTHETIC_ALPHABET)
    assert a.text != synthetic_corpus(2000, 1).text
    assert synthetic_corpus(500, 0).text == a.text[:500]


def test_synthetic_text_is_pinned_across_machines() -> None:
    # Raw PCG64 words and integer arithmetic only: the offline default corpus is the same
    # everywhere, so results on it are comparable between machines.
    assert synthetic_corpus(40, 0).text == ".r,'bpya\n.edcr,h wigh wuvsxkh ymr,tijkf'"


def test_synthetic_chain_is_a_valid_stationary_markov_chain() -> None:
    s = synthetic_corpus(1000, 3)
    p, pi = s.transition, s.stationary
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(pi @ p, pi, atol=1e-12)
    assert (pi > 0).all() and pi.sum() == pytest.approx(1.0)
    # Probabilities are exact multiples of 1/1024, so 10-bit draws sample them exactly.
    np.testing.assert_array_equal(p * data.SYNTHETIC_QUANTUM, np.round(p * data.SYNTHETIC_QUANTUM))
    # Sparse rows: a few successors each, so the chain is learnable.
    assert ((p > 0).sum(axis=1) <= 1 + 1 + data._MAX_EXTRA).all()
    assert 0 < s.entropy_rate < s.unigram_entropy <= np.log(len(s.alphabet))


@pytest.mark.parametrize("seed", [0, 7])
def test_synthetic_plug_in_entropies_approach_closed_form(seed: int) -> None:
    s = synthetic_corpus(500_000, seed)
    tok = _core.CharTokenizer(list(s.alphabet))
    h1, h2, h3 = _core.ngram_entropies(tok.encode(s.text), 3)
    assert h1 == pytest.approx(s.unigram_entropy, abs=0.01)
    assert h2 == pytest.approx(s.entropy_rate, abs=0.01)
    # First-order chain: a second character of context adds nothing.
    assert h3 == pytest.approx(s.entropy_rate, abs=0.01)
    # Bigram frequencies follow the transition matrix.
    ids = tok.encode(s.text).astype(np.int64)
    counts = np.zeros_like(s.transition)
    np.add.at(counts, (ids[:-1], ids[1:]), 1)
    est = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(est, s.transition, atol=0.02)


def test_synthetic_rejects_empty_length() -> None:
    with pytest.raises(PyphaseError, match="n_chars must be at least 1, got 0"):
        synthetic_corpus(0)


# ------------------------------------------------------------------------------ load_corpus: files
@pytest.fixture()
def small_file(tmp_path: Path) -> Path:
    p = tmp_path / "books" / "small.txt"
    p.parent.mkdir()
    p.write_text(synthetic_corpus(10_000, 5).text + "é", encoding="utf-8")
    return p


def test_single_file_split_is_last_tenth(small_file: Path) -> None:
    c = load_corpus(small_file)
    text = small_file.read_text(encoding="utf-8")
    ids = c.tokenizer.encode(text)
    assert len(c.valid) == round(len(text) * 0.1)
    np.testing.assert_array_equal(np.concatenate([c.train, c.valid]), ids)
    assert c.tokenizer.decode(c.valid) == text[-len(c.valid) :]
    assert c.tokenizer.vocab == sorted(set(text))
    assert c.sha256 == hashlib.sha256(small_file.read_bytes()).hexdigest()
    assert c.name == "books/small.txt" and c.source == str(small_file) and c.test is None
    h = _core.ngram_entropies(c.train, 3)
    assert [c.unigram_entropy, c.bigram_entropy, c.trigram_entropy] == h


def test_valid_fraction_and_str_path(small_file: Path) -> None:
    c = load_corpus(str(small_file), valid_fraction=0.25)
    assert len(c.valid) == round((len(c.train) + len(c.valid)) * 0.25)


def test_env_variable_names_the_corpus(small_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(data.DATA_ENV, str(small_file))
    assert load_corpus().sha256 == hashlib.sha256(small_file.read_bytes()).hexdigest()


def test_no_path_and_no_env_gives_synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    c = load_corpus()
    syn = synthetic_corpus()
    assert c.name == "synthetic" and c.source == "synthetic"
    assert c.sha256 == hashlib.sha256(syn.text.encode()).hexdigest()
    assert c.tokenizer.decode(c.train) + c.tokenizer.decode(c.valid) == syn.text
    assert c.unigram_entropy == pytest.approx(syn.unigram_entropy, abs=0.02)
    assert c.bigram_entropy == pytest.approx(syn.entropy_rate, abs=0.02)


def test_tinyshakespeare_checksum_matches_readme(tinyshakespeare: Path, shared_data: Path) -> None:
    readme = (shared_data / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if "tinyshakespeare/input.txt" in line)
    expected = re.search(r"\b([0-9a-f]{64})\b", row).group(1)
    c = load_corpus(tinyshakespeare)
    assert c.sha256 == expected and c.tokenizer.vocab_size == 65
    assert c.name == "tinyshakespeare/input.txt"


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "corpus not found: "),
        (b"", "corpus is empty: "),
        (b"good text\xff\xfe", r"corpus is not UTF-8: .*invalid byte 0xff at byte offset 9"),
        (b"abc", "too short to split"),
    ],
)
def test_file_errors(tmp_path: Path, content: bytes | None, needle: str) -> None:
    p = tmp_path / "c.txt"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(PyphaseError, match=needle):
        load_corpus(p)


def test_special_file_is_not_a_corpus(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(PyphaseError, match="corpus is not a file: "):
        load_corpus(fifo)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_valid_fraction_out_of_range(small_file: Path, fraction: float) -> None:
    with pytest.raises(PyphaseError, match=f"valid_fraction must be between 0 and 1, got {fraction}"):
        load_corpus(small_file, valid_fraction=fraction)


def test_folder_without_splits_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(PyphaseError, match="holds no WikiText splits"):
        load_corpus(tmp_path)


# ------------------------------------------------------------------------------ load_corpus: WikiText
SPLITS = {"train": " = Valkyria = \n the game began ", "valid": " = Tower = \n it was built ", "test": " = Qué = \n"}


def write_wikitext(folder: Path, names: tuple[str, str, str], with_test: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for split, name in zip(("train", "valid", "test"), names):
        if split != "test" or with_test:
            (folder / name).write_text(SPLITS[split] * 20, encoding="utf-8")


@pytest.mark.parametrize("names", data.WIKITEXT_LAYOUTS)
def test_wikitext_folder_keeps_its_splits(tmp_path: Path, names: tuple[str, str, str]) -> None:
    write_wikitext(tmp_path / "wt", names)
    c = load_corpus(tmp_path / "wt")
    assert c.tokenizer.decode(c.train) == SPLITS["train"] * 20
    assert c.tokenizer.decode(c.valid) == SPLITS["valid"] * 20
    assert c.tokenizer.decode(c.test) == SPLITS["test"] * 20
    # The vocabulary covers every split: 'é' and 'Q' appear only in test.
    assert "é" in c.tokenizer.vocab and "Q" in c.tokenizer.vocab
    digest = hashlib.sha256(b"".join((tmp_path / "wt" / n).read_bytes() for n in names)).hexdigest()
    assert c.sha256 == digest and c.name == "wt"


def test_wikitext_unpacked_subfolder_and_missing_test(tmp_path: Path) -> None:
    write_wikitext(tmp_path / "dl" / "wikitext-2-raw", data.WIKITEXT_LAYOUTS[0], with_test=False)
    c = load_corpus(tmp_path / "dl")
    assert c.test is None and c.tokenizer.decode(c.valid) == SPLITS["valid"] * 20


def test_wikitext_empty_split_is_an_error(tmp_path: Path) -> None:
    write_wikitext(tmp_path, data.WIKITEXT_LAYOUTS[0])
    (tmp_path / "wiki.valid.raw").write_bytes(b"")
    with pytest.raises(PyphaseError, match=r"corpus is empty: .*wiki\.valid\.raw"):
        load_corpus(tmp_path)


# ------------------------------------------------------------------------------ splits too short for one window
def test_a_file_too_short_for_one_validation_window_names_file_split_length_and_need(tmp_path: Path) -> None:
    p = tmp_path / "tiny.txt"
    p.write_text("the quick brown fox jumps over the lazy dog. hello", encoding="utf-8")  # 50 chars: 45 + 5
    with pytest.raises(PyphaseError) as e:
        load_corpus(p, block_size=32)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"corpus {p}: validation split has 5 characters, ")
    assert "train split" not in msg  # 45 characters hold a window of 33
    assert "fewer than the 33 one window needs (block_size + 1 = 32 + 1)" in msg
    assert "the last 10% of the file: give a file of at least 326 characters (it has 50)" in msg
    # the Rust batcher, which the trainer called with this corpus, says neither the split nor the file
    c = load_corpus(p)  # without a block size nothing is checked
    with pytest.raises(ValueError, match="must be smaller than the number of tokens 5"):
        _core.eval_offsets(len(c.valid), 32)


def test_a_train_split_too_short_with_a_long_enough_validation_split(tmp_path: Path) -> None:
    p = tmp_path / "tiny.txt"
    p.write_text("x" * 50, encoding="utf-8")
    with pytest.raises(PyphaseError, match=rf"^corpus {re.escape(str(p))}: train split has 10 characters, fewer than "
                       r"the 33 one window needs \(block_size \+ 1 = 32 \+ 1\); .*at least 163 characters"):
        load_corpus(p, valid_fraction=0.8, block_size=32)  # valid: 40 characters, enough
    with pytest.raises(PyphaseError, match="train split has 45 characters and validation split has 5 characters, "
                                           "fewer than the 257 one window needs"):
        load_corpus(p, block_size=256)


@pytest.mark.parametrize("short", ["train", "valid"])
def test_a_wikitext_split_too_short_names_its_file_and_exactly_enough_works(tmp_path: Path, short: str) -> None:
    block = 16
    for split, name in zip(("train", "valid"), data.WIKITEXT_LAYOUTS[0]):
        (tmp_path / name).write_text(("ab" * 40)[: block + 1 if split == short else 80], encoding="utf-8")
    c = load_corpus(tmp_path, block_size=block)  # block + 1 characters: one window, no more
    assert len(getattr(c, short)) == block + 1
    # and the Rust batcher agrees: training windows can be drawn (from offset 0 alone where train is
    # one window long), and the valid split holds whole evaluation windows (exactly one where short)
    offs = _core.batch_offsets(len(c.train), block, 3, [0], 0, 2)
    assert short != "train" or (offs == 0).all()
    assert len(_core.eval_offsets(len(c.valid), block)) == (1 if short == "valid" else 79 // block)
    word, name = ("train", "wiki.train.raw") if short == "train" else ("validation", "wiki.valid.raw")
    with pytest.raises(PyphaseError, match=rf"^corpus {re.escape(str(tmp_path))}: {word} split \({re.escape(name)}\) "
                                           rf"has 17 characters, fewer than the 18 one window needs "
                                           r"\(block_size \+ 1 = 17 \+ 1\); use longer splits"):
        load_corpus(tmp_path, block_size=block + 1)


@pytest.mark.parametrize("block", [4, 32, 256])
def test_the_file_size_the_message_asks_for_is_exactly_enough(tmp_path: Path, block: int) -> None:
    n = data._min_chars(block + 1, data.DEFAULT_VALID_FRACTION)
    p = tmp_path / "c.txt"
    p.write_text("a" * n, encoding="utf-8")
    c = load_corpus(p, block_size=block)
    assert min(len(c.train), len(c.valid)) >= block + 1
    _core.batch_offsets(len(c.train), block, 2, [0], 0, 1)
    assert len(_core.eval_offsets(len(c.valid), block)) >= 1
    p.write_text("a" * (n - 1), encoding="utf-8")
    with pytest.raises(PyphaseError, match=f"give a file of at least {n:,} characters \\(it has {n - 1:,}\\)"):
        load_corpus(p, block_size=block)


@pytest.mark.parametrize("block", [16, 32, 256])
def test_a_train_only_check_asks_for_the_size_that_gives_the_train_split_one_window(tmp_path: Path, block: int) -> None:
    """calibrate with --steps-along 0 and the radial calibration check the train split alone: the size
    asked for is the one that gives the train split a window (not both splits), and the message says
    nothing of the validation split."""
    n = data._min_chars(block + 1, data.DEFAULT_VALID_FRACTION, ("train",))
    assert n < data._min_chars(block + 1, data.DEFAULT_VALID_FRACTION)
    p = tmp_path / "c.txt"
    p.write_text("a" * n, encoding="utf-8")
    c = load_corpus(p)
    c.check_windows(block, ("train",))  # exactly enough: the train split holds one window
    assert len(c.train) >= block + 1
    _core.batch_offsets(len(c.train), block, 2, [0], 0, 1)
    p.write_text("a" * (n - 1), encoding="utf-8")
    c = load_corpus(p)
    with pytest.raises(PyphaseError) as e:
        c.check_windows(block, ("train",))
    msg = str(e.value)
    assert msg.startswith(f"corpus {p}: train split has {len(c.train):,} characters, fewer than the {block + 1:,}")
    assert f"the train split is the first 90% of the file: give a file of at least {n:,} characters (it has {n - 1:,})" in msg
    assert "valid" not in msg


def test_a_train_only_check_of_a_file_whose_validation_split_is_short_too(tmp_path: Path) -> None:
    p = tmp_path / "tiny.txt"
    p.write_text("a" * 50, encoding="utf-8")  # train 45, valid 5
    c = load_corpus(p)
    c.check_windows(32, ("train",))  # the validation split is not checked
    with pytest.raises(PyphaseError) as e:
        c.check_windows(64, ("train",))
    msg = str(e.value)
    assert "train split has 45 characters, fewer than the 65" in msg and "valid" not in msg
    assert f"give a file of at least {data._min_chars(65, 0.1, ('train',))} characters (it has 50)" in msg
    assert data._min_chars(65, 0.1, ("train",)) == 72  # 72 - round(7.2) = 65; 71 - round(7.1) = 64
    with pytest.raises(PyphaseError, match="validation split is the last 10% of the file: give a file of at least 646 "):
        c.check_windows(64)  # both checked: the size that gives both a window


def test_the_synthetic_corpus_too_short_says_to_pass_a_longer_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthetic corpus has no file to lengthen: the advice is --data or a smaller block_size."""
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    c = load_corpus()
    assert c.source == "synthetic" and not c.split_files
    block = 10 * (len(c.train) + len(c.valid))
    for splits in (("train", "valid"), ("train",)):
        with pytest.raises(PyphaseError) as e:
            c.check_windows(block, splits)
        msg = str(e.value)
        least = data._min_chars(block + 1, c.valid_fraction, splits)
        assert msg.startswith(f"corpus synthetic: train split has {len(c.train):,} characters")
        assert msg.endswith(f"; pass a longer corpus with --data (or {data.DATA_ENV}), e.g. a file of at least "
                            f"{least:,} characters, or a smaller block_size")
        assert "give a text" not in msg and "of the text" not in msg
        assert ("validation split" in msg) == ("valid" in splits)
    with pytest.raises(PyphaseError, match="pass a longer corpus with --data"):
        load_corpus(block_size=block)


def test_too_short_from_the_environment_variable_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "tiny.txt"
    p.write_text("a" * 50, encoding="utf-8")
    monkeypatch.setenv(data.DATA_ENV, str(p))
    with pytest.raises(PyphaseError, match=r"validation split has 5 characters.*\(path from the PYPHASE_DATA"):
        load_corpus(block_size=32)


# ------------------------------------------------------------------------------ corpus_stats
def test_corpus_stats_of_a_file(small_file: Path) -> None:
    s = data.corpus_stats(small_file, repeats=1)
    text = small_file.read_text(encoding="utf-8")
    tok = _core.CharTokenizer.from_text(text)
    assert s["bytes"] == len(text.encode()) == len(text) + 1  # one two-byte 'é'
    assert s["chars"] == len(text) and s["vocab_size"] == tok.vocab_size
    h = _core.ngram_entropies(tok.encode(text), 3)
    assert [s["unigram_entropy"], s["bigram_entropy"], s["trigram_entropy"]] == h
    assert s["encode_mb_per_s"] > 0 and s["encode_tokens_per_s"] > 0
    assert s["sha256"] == hashlib.sha256(small_file.read_bytes()).hexdigest()


def test_corpus_stats_of_a_folder_and_errors(tmp_path: Path) -> None:
    write_wikitext(tmp_path / "wt", data.WIKITEXT_LAYOUTS[1])
    s = data.corpus_stats(tmp_path / "wt", repeats=1)
    assert s["chars"] == 20 * sum(len(v) for v in SPLITS.values())
    with pytest.raises(PyphaseError, match="corpus not found"):
        data.corpus_stats(tmp_path / "missing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PyphaseError, match="holds no WikiText splits"):
        data.corpus_stats(tmp_path / "empty")


# ------------------------------------------------------------------------------ fetch
class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        _Quiet.requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server serving tmp_path/www on 127.0.0.1; yields (base URL, folder)."""
    www = tmp_path / "www"
    www.mkdir()
    _Quiet.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(www)))
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    finally:
        httpd.shutdown()
        httpd.server_close()


def make_zip(path: Path, members: dict[str, str]) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


WT_MEMBERS = {f"wikitext-2-raw/wiki.{s}.raw": SPLITS[s] * 10 for s in ("train", "valid", "test")}


def test_fetch_verifies_unpacks_and_loads(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, www = server
    digest = make_zip(www / "wikitext-2-raw-v1.zip", WT_MEMBERS)
    monkeypatch.setitem(data.ARCHIVES, "wikitext-2", Archive(f"{base}/wikitext-2-raw-v1.zip", digest, "wikitext-2-raw"))
    folder = data.fetch("wikitext-2", tmp_path / "dest")
    assert folder == tmp_path / "dest" / "wikitext-2-raw"
    assert (folder / "wiki.valid.raw").read_text() == SPLITS["valid"] * 10
    assert not list((tmp_path / "dest").glob("*.part"))
    c = load_corpus(tmp_path / "dest")
    assert c.tokenizer.decode(c.train) == SPLITS["train"] * 10
    # A verified archive already in dest is not downloaded again.
    n = len(_Quiet.requests)
    assert data.fetch("wikitext-2", tmp_path / "dest") == folder
    assert len(_Quiet.requests) == n


def test_fetch_mirror_url_is_still_verified(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, www = server
    digest = make_zip(www / "mirror.zip", WT_MEMBERS)
    monkeypatch.setitem(data.ARCHIVES, "wikitext-2", Archive("http://127.0.0.1:9/wikitext-2-raw-v1.zip", digest, "wikitext-2-raw"))
    folder = data.fetch("wikitext-2", tmp_path / "d", url=f"{base}/mirror.zip")
    assert (folder / "wiki.train.raw").is_file()
    assert _Quiet.requests == ["/mirror.zip"]


def test_fetch_checksum_mismatch_deletes_download_and_unpacks_nothing(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, www = server
    digest = make_zip(www / "wikitext-2-raw-v1.zip", WT_MEMBERS)
    wrong = "0" * 64
    monkeypatch.setitem(data.ARCHIVES, "wikitext-2", Archive(f"{base}/wikitext-2-raw-v1.zip", wrong, "wikitext-2-raw"))
    dest = tmp_path / "dest"
    with pytest.raises(PyphaseError, match=f"sha256 mismatch for .*: expected {wrong}, got {digest}; the download was deleted"):
        data.fetch("wikitext-2", dest)
    assert not dest.exists()  # nothing downloaded, and the folder this call made is gone too


def test_fetch_destination_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(PyphaseError, match="cannot create destination folder .*f"):
        data.fetch("wikitext-2", tmp_path / "f")


def test_fetch_unknown_name_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(PyphaseError, match="unknown corpus 'wiki'; known: wikitext-2, wikitext-2-tokenized"):
        data.fetch("wiki", tmp_path)


def test_fetch_http_error_and_unreachable_server(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = server
    monkeypatch.setitem(data.ARCHIVES, "wikitext-2", Archive(f"{base}/missing.zip", "0" * 64, "wikitext-2-raw"))
    with pytest.raises(PyphaseError, match=r"download of .*/missing\.zip failed: HTTP 404 "):
        data.fetch("wikitext-2", tmp_path / "a")
    assert not (tmp_path / "a").exists()
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    with pytest.raises(PyphaseError, match="download of http://127.0.0.1:9/x.zip failed"):
        data.fetch("wikitext-2", tmp_path / "b", url="http://127.0.0.1:9/x.zip")


@pytest.mark.parametrize(
    "members, needle",
    [
        ({"../evil.txt": "x"}, "has a member outside its folder: ../evil.txt"),
        ({"other/wiki.train.raw": "x"}, "did not unpack to"),
    ],
)
def test_fetch_rejects_unsafe_or_unexpected_archives(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict[str, str], needle: str
) -> None:
    base, www = server
    digest = make_zip(www / "a.zip", members)
    monkeypatch.setitem(data.ARCHIVES, "wikitext-2", Archive(f"{base}/a.zip", digest, "wikitext-2-raw"))
    with pytest.raises(PyphaseError, match=needle):
        data.fetch("wikitext-2", tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists()


def test_fetch_rejects_a_corrupt_zip(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, www = server
    (www / "a.zip").write_bytes(b"not a zip at all")
    digest = hashlib.sha256(b"not a zip at all").hexdigest()
    monkeypatch.setitem(data.ARCHIVES, "wikitext-2", Archive(f"{base}/a.zip", digest, "wikitext-2-raw"))
    with pytest.raises(PyphaseError, match="is not a valid zip file"):
        data.fetch("wikitext-2", tmp_path / "dest")


def test_known_archives_are_the_canonical_ones() -> None:
    # Pinned so that a typo in a URL or checksum cannot slip in unnoticed (values from
    # huggingface/datasets dataset_infos.json, see pyphase/data.py).
    raw, tok = data.ARCHIVES["wikitext-2"], data.ARCHIVES["wikitext-2-tokenized"]
    assert raw.url.endswith("/wikitext-2-raw-v1.zip") and tok.url.endswith("/wikitext-2-v1.zip")
    assert raw.sha256.startswith("ef7edb56") and tok.sha256.startswith("92675f1d")
    assert all(re.fullmatch(r"[0-9a-f]{64}", a.sha256) for a in data.ARCHIVES.values())


def test_fetch_uses_an_unpacked_folder_and_names_a_local_archive_of_another_checksum(
    server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base, www = server
    digest = make_zip(www / "wikitext-2-raw-v1.zip", WT_MEMBERS)
    monkeypatch.setitem(data.ARCHIVES, "wikitext-2", Archive(f"{base}/wikitext-2-raw-v1.zip", digest, "wikitext-2-raw"))
    # unpacked already (by hand, or the archive deleted since): used, not downloaded again
    placed = tmp_path / "placed"
    for member, text in WT_MEMBERS.items():
        (placed / member).parent.mkdir(parents=True, exist_ok=True)
        (placed / member).write_text(text)
    assert data.fetch("wikitext-2", placed) == placed / "wikitext-2-raw"
    assert _Quiet.requests == [] and "already holds the splits" in capsys.readouterr().err
    # a local archive of another checksum is named, then downloaded again and verified
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "wikitext-2-raw-v1.zip").write_bytes(b"old bytes")
    folder = data.fetch("wikitext-2", stale)
    err = capsys.readouterr().err
    assert f"{stale / 'wikitext-2-raw-v1.zip'} has sha256 " in err and "downloading it again" in err
    assert (folder / "wiki.train.raw").read_text() == WT_MEMBERS["wikitext-2-raw/wiki.train.raw"]


def test_a_short_or_interrupted_download_leaves_no_partial_file(tmp_path: Path) -> None:
    """A server that announces more bytes than it sends: the message says so (not a checksum
    mismatch), and no .part file stays; the same for Ctrl-C in the middle."""

    class Short(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"x" * 70_000)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        part = tmp_path / "w.zip.part"
        with pytest.raises(PyphaseError, match="the connection closed after 70,000 of 1,000,000 bytes"):
            data._download(f"http://127.0.0.1:{httpd.server_address[1]}/w.zip", part)
        assert not part.exists()
    finally:
        httpd.shutdown()
        httpd.server_close()

    class Interrupting:
        headers = {"Content-Length": "100"}

        def __enter__(self) -> "Interrupting":
            return self

        def __exit__(self, *a: object) -> None:
            pass

        def read(self, n: int) -> bytes:
            raise KeyboardInterrupt

    import urllib.request

    real = urllib.request.urlopen
    urllib.request.urlopen = lambda *a, **k: Interrupting()  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            data._download("http://example.invalid/w.zip", part)
    finally:
        urllib.request.urlopen = real
    assert not part.exists()


def test_raw_wikitext_is_read_where_both_archives_were_unpacked(tmp_path: Path) -> None:
    both = tmp_path / "data"
    for sub, ext, text in (("wikitext-2", "tokens", "tokenized"), ("wikitext-2-raw", "raw", "raw text")):
        (both / sub).mkdir(parents=True)
        for split in ("train", "valid", "test"):
            (both / sub / f"wiki.{split}.{ext}").write_text(f"{text} {split} " * 20)
    c = load_corpus(both)
    assert c.tokenizer.decode(c.train).startswith("raw text train") and c.name == "data/wikitext-2-raw"


# ------------------------------------------------------------------------------ messages: path source, missing splits
def test_a_bad_path_from_the_environment_names_the_variable(tmp_path: Path, monkeypatch) -> None:
    missing = tmp_path / "nonexist"
    monkeypatch.setenv(data.DATA_ENV, str(missing))
    with pytest.raises(PyphaseError) as e:
        load_corpus()
    assert str(e.value) == f"corpus not found: {missing} (path from the PYPHASE_DATA environment variable)"
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "empty"))
    with pytest.raises(PyphaseError,
                       match=r"holds no WikiText splits .*\(path from the PYPHASE_DATA environment variable\)$"):
        load_corpus()
    # a path given explicitly wins over the variable and is not blamed on it
    with pytest.raises(PyphaseError) as e:
        load_corpus(missing)
    assert str(e.value) == f"corpus not found: {missing}"


def test_a_folder_with_some_splits_says_which_are_found_and_missing(tmp_path: Path) -> None:
    folder = tmp_path / "wt"
    folder.mkdir()
    (folder / "wiki.train.raw").write_text("hello", encoding="utf-8")
    expected = (f"folder {folder} holds no WikiText splits: found wiki.train.raw; missing wiki.valid.raw, "
                "wiki.test.raw (train and valid are needed, test is optional)")
    for load in (load_corpus, data.corpus_stats):
        with pytest.raises(PyphaseError) as e:
            load(folder)
        assert str(e.value) == expected
    # in an unpacked subfolder: named with it
    sub = tmp_path / "two" / "wikitext-2"
    sub.mkdir(parents=True)
    for name in ("wiki.valid.tokens", "wiki.test.tokens"):
        (sub / name).write_text("x", encoding="utf-8")
    with pytest.raises(PyphaseError, match=re.escape(
            "found wikitext-2/wiki.valid.tokens, wikitext-2/wiki.test.tokens; missing wikitext-2/wiki.train.tokens")):
        load_corpus(tmp_path / "two")
