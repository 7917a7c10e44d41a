"""Corpora: loading text files and WikiText-2 folders into train/valid token arrays, downloading
and verifying known archives, the project's seeded synthetic corpus, corpus statistics, and
sequential evaluation batches. Tokenization, n-gram statistics and window sampling are done by the
Rust core (`pyphase._core`); this module decides what is read, how it is split, and checks inputs.

Corpus text is never committed: real corpora are read from a path (`--data` / `PYPHASE_DATA`),
and the offline default is generated here from a seed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import statistics
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pyphase import _core
from pyphase._core import CharTokenizer
from pyphase.errors import PyphaseError

#: Environment variable naming the corpus when no path is given.
DATA_ENV = "PYPHASE_DATA"
#: Fraction of a single file's characters (its end) held out for validation.
DEFAULT_VALID_FRACTION = 0.1


# ------------------------------------------------------------------------------ corpus
@dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenized corpus split into train/valid (and test, for WikiText-2) id arrays.

    Entropies are plug-in estimates over the train split, in nats per character: the loss of a
    model that has learned only letter frequencies (unigram), or only the previous one or two
    characters (bigram, trigram) - milestones to draw on loss curves.
    """

    name: str
    source: str  # path of the file or folder, or "synthetic"
    sha256: str  # of the source bytes (a folder: its split files in train/valid/test order)
    tokenizer: CharTokenizer
    train: np.ndarray
    valid: np.ndarray
    unigram_entropy: float
    bigram_entropy: float
    trigram_entropy: float
    test: np.ndarray | None = None
    #: A single file: the fraction of its characters (its end) held out as the valid split; None
    #: for a folder, whose splits are its own files.
    valid_fraction: float | None = None
    #: The file each split was read from (train, valid[, test]); empty for the synthetic corpus.
    split_files: tuple[str, ...] = ()

    def check_windows(self, block_size: int, splits: tuple[str, ...] = ("train", "valid")) -> None:
        """Raise a one-line PyphaseError unless each of `splits` holds one window: `block_size`
        inputs and their targets, block_size + 1 characters. Training draws windows from the train
        split and evaluates on whole windows of the valid split; the Rust batcher's own error for a
        short split names neither the split nor the file.

        The advice fits the corpus: a single file is told the smallest size that gives each checked
        split one window (as `_make_corpus` cuts it), a folder to use longer splits, the synthetic
        corpus (no file to lengthen) to pass a longer one with --data."""
        need = block_size + 1
        short = [s for s in splits if len(getattr(self, s)) < need]
        if not short:
            return
        words = {"train": "train", "valid": "validation", "test": "test"}
        index = {"train": 0, "valid": 1, "test": 2}
        parts = []
        for s in short:
            where = ""
            if self.valid_fraction is None and len(self.split_files) > index[s]:  # a folder: name the split's file
                where = f" ({Path(self.split_files[index[s]]).name})"
            parts.append(f"{words[s]} split{where} has {len(getattr(self, s)):,} characters")
        msg = (f"corpus {self.source}: {' and '.join(parts)}, fewer than the {need:,} one window needs "
               f"(block_size + 1 = {block_size:,} + 1)")
        if self.valid_fraction is not None:
            least = _min_chars(need, self.valid_fraction, tuple(s for s in splits if s in ("train", "valid")))
            if not self.split_files and self.source == "synthetic":  # generated here: no text to lengthen
                msg += (f"; pass a longer corpus with --data (or {DATA_ENV}), e.g. a file of at least "
                        f"{least:,} characters, or a smaller block_size")
            else:
                what = "file" if self.split_files else "text"
                split = (f"the validation split is the last {self.valid_fraction * 100:g}%" if "valid" in splits
                         else f"the train split is the first {(1.0 - self.valid_fraction) * 100:g}%")
                msg += (f"; {split} of the {what}: give a {what} of at least {least:,} characters (it has "
                        f"{len(self.train) + len(self.valid):,}), or a smaller block_size")
        else:
            msg += "; use longer splits or a smaller block_size"
        raise PyphaseError(msg)


def _min_chars(need: int, valid_fraction: float, splits: tuple[str, ...] = ("train", "valid")) -> int:
    """The fewest characters a single file needs so that each of `splits` ("train", "valid"), as
    `_make_corpus` cuts them (the last round(n * valid_fraction) characters are the valid split),
    holds at least `need` characters, and that `_make_corpus` can split at all (2 each). Both
    split lengths only grow with n, so the first n that is enough is the answer."""
    need_train = need if "train" in splits else 2
    need_valid = need if "valid" in splits else 2
    # below either bound one split is short for certain: n(1 - f) + 1/2 >= train, n f + 1/2 >= valid
    n = max(need_train + need_valid, int((need_train - 1) / (1.0 - valid_fraction)),
            int((need_valid - 1) / valid_fraction))
    while True:
        n_valid = int(round(n * valid_fraction))
        if n_valid >= need_valid and n - n_valid >= need_train:
            return n
        n += 1


# WikiText layouts, tried in this order: (train, valid, test) file names inside the folder.
WIKITEXT_LAYOUTS: list[tuple[str, str, str]] = [
    ("wiki.train.raw", "wiki.valid.raw", "wiki.test.raw"),
    ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
    ("train.txt", "valid.txt", "test.txt"),
]


def _read_utf8(path: Path) -> tuple[bytes, str]:
    """Bytes and text of a UTF-8 file, or a PyphaseError saying in one line what is wrong."""
    if not path.exists():
        raise PyphaseError(f"corpus not found: {path}")
    if not path.is_file():
        raise PyphaseError(f"corpus is not a file: {path}")
    raw = path.read_bytes()
    if not raw:
        raise PyphaseError(f"corpus is empty: {path}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PyphaseError(f"corpus is not UTF-8: {path}: invalid byte 0x{raw[e.start]:02x} at byte offset {e.start}") from None
    return raw, text


def _wikitext_files(folder: Path) -> list[Path] | None:
    """The split files of a WikiText folder (or of an unpacked subfolder), train first. Layouts are
    tried in WIKITEXT_LAYOUTS order across the folder and its subfolders, so where both archives
    were unpacked side by side (wikitext-2-raw/ and wikitext-2/, as the two `fetch` names leave
    them) the raw text, the character-level corpus, is the one read."""
    dirs = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]
    for layout in WIKITEXT_LAYOUTS:
        for d in dirs:
            files = [d / name for name in layout]
            if files[0].is_file() and files[1].is_file():
                return [f for f in files if f.is_file()]
    return None


def _no_splits_error(folder: Path) -> PyphaseError:
    """"folder ... holds no WikiText splits", saying, where some split files of a layout are there,
    which were found and which are missing (train and valid are needed, test is optional); else
    which file names were looked for."""
    dirs = [folder, *sorted(p for p in folder.iterdir() if p.is_dir())]
    partial = []
    for layout in WIKITEXT_LAYOUTS:
        for d in dirs:
            found = [n for n in layout if (d / n).is_file()]
            if found:
                where = "" if d == folder else f"{d.name}/"
                missing = [n for n in layout if n not in found]
                partial.append(f"found {', '.join(where + n for n in found)}; missing "
                               f"{', '.join(where + n for n in missing)}")
    if partial:
        return PyphaseError(f"folder {folder} holds no WikiText splits: {'; '.join(partial)} "
                            "(train and valid are needed, test is optional)")
    names = ", ".join("/".join(layout) for layout in WIKITEXT_LAYOUTS)
    return PyphaseError(f"folder {folder} holds no WikiText splits (looked for {names})")


def _entropies(ids: np.ndarray) -> list[float]:
    order = min(3, len(ids))
    h = _core.ngram_entropies(ids, order)
    return h + [float("nan")] * (3 - order)


def _make_corpus(name: str, source: str, digest: str, texts: list[str], single_valid_fraction: float | None,
                 files: Sequence[str] = ()) -> Corpus:
    # The vocabulary covers every split loaded, so valid/test never hold unknown characters.
    tok = CharTokenizer.from_text("".join(texts))
    if single_valid_fraction is not None:
        ids = tok.encode(texts[0])
        n_valid = int(round(len(ids) * single_valid_fraction))
        if n_valid < 2 or len(ids) - n_valid < 2:
            raise PyphaseError(
                f"corpus {source} has {len(ids)} characters: too short to split with valid_fraction={single_valid_fraction}"
            )
        splits = [ids[: len(ids) - n_valid], ids[len(ids) - n_valid :], None]
    else:
        splits = [tok.encode(t) for t in texts] + [None] * (3 - len(texts))
    h1, h2, h3 = _entropies(splits[0])
    return Corpus(name, source, digest, tok, splits[0], splits[1], h1, h2, h3, splits[2],
                  valid_fraction=single_valid_fraction, split_files=tuple(files))


def load_corpus(path: str | Path | None = None, *, valid_fraction: float = DEFAULT_VALID_FRACTION,
                block_size: int | None = None) -> Corpus:
    """Load a corpus: `path`, else `$PYPHASE_DATA`, else the embedded synthetic corpus.

    A single UTF-8 file is split by characters: the last `valid_fraction` is the valid split.
    A WikiText-2 folder (raw `wiki.*.raw`, tokenized `wiki.*.tokens`, or `train/valid/test.txt`,
    directly or in its one unpacked subfolder) keeps its own train/valid/test splits.
    With `block_size`, the train and valid splits must each hold one window of it
    (`Corpus.check_windows`), so a corpus too short to train on is an error before any training.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise PyphaseError(f"valid_fraction must be between 0 and 1, got {valid_fraction}")
    if path is None and os.environ.get(DATA_ENV):
        env = os.environ[DATA_ENV]
        try:
            return _checked(_load_path(env, valid_fraction), block_size)
        except PyphaseError as e:  # the user gave no path: say where this one came from
            raise PyphaseError(f"{e} (path from the {DATA_ENV} environment variable)") from None
    if path is None:
        syn = synthetic_corpus()
        digest = hashlib.sha256(syn.text.encode("utf-8")).hexdigest()
        return _checked(_make_corpus("synthetic", "synthetic", digest, [syn.text], valid_fraction), block_size)
    return _checked(_load_path(path, valid_fraction), block_size)


def _checked(corpus: Corpus, block_size: int | None) -> Corpus:
    if block_size is not None:
        corpus.check_windows(block_size)
    return corpus


def _load_path(path: str | Path, valid_fraction: float) -> Corpus:
    p = Path(path).expanduser()
    if p.is_dir():
        files = _wikitext_files(p)
        if files is None:
            raise _no_splits_error(p)
        h = hashlib.sha256()
        texts = []
        for f in files:
            raw, text = _read_utf8(f)
            h.update(raw)
            texts.append(text)
        sub = files[0].parent
        name = p.name if sub == p else f"{p.name}/{sub.name}"  # which unpacked subfolder was read
        return _make_corpus(name, str(sub), h.hexdigest(), texts, None, [str(f) for f in files])
    raw, text = _read_utf8(p)
    name = f"{p.parent.name}/{p.name}" if p.parent.name else p.name
    return _make_corpus(name, str(p), hashlib.sha256(raw).hexdigest(), [text], valid_fraction, [str(p)])


def corpus_stats(path: str | Path, *, repeats: int = 3) -> dict[str, object]:
    """Size, vocabulary, n-gram entropies (nats/char, whole text) and encode speed of a corpus.

    For a WikiText folder the text is its split files joined in train/valid/test order.
    Encode speed is the median of `repeats` encodes of the whole text by the Rust tokenizer.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        files = _wikitext_files(p)
        if files is None:
            raise _no_splits_error(p)
        parts = [_read_utf8(f) for f in files]
        raw, text = b"".join(r for r, _ in parts), "".join(t for _, t in parts)
    else:
        raw, text = _read_utf8(p)
    tok = CharTokenizer.from_text(text)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        ids = tok.encode(text)
        times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    h1, h2, h3 = _entropies(ids)
    return {
        "path": str(p),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "bytes": len(raw),
        "chars": len(text),
        "vocab_size": tok.vocab_size,
        "unigram_entropy": h1,
        "bigram_entropy": h2,
        "trigram_entropy": h3,
        "encode_mb_per_s": len(raw) / dt / 1e6,
        "encode_tokens_per_s": len(ids) / dt,
    }


def eval_batches(tokens: np.ndarray, block: int, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Sequential, non-overlapping evaluation batches ``(x, y)`` of shape ``(<=batch, block)``.

    Every target position ``1..m*block`` of the split is covered exactly once, where
    ``m = (len(tokens) - 1) // block``; the last ``(len(tokens) - 1) % block`` targets (less than
    one window) are left out. Only the last batch may hold fewer than ``batch`` windows.
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    offsets = _core.eval_offsets(len(tokens), block)
    for start in range(0, len(offsets), batch):
        yield _core.gather_windows(tokens, offsets[start : start + batch], block)


# ------------------------------------------------------------------------------ synthetic corpus
#: Alphabet of the synthetic corpus: lowercase letters, space, a little punctuation, newline.
SYNTHETIC_ALPHABET = "abcdefghijklmnopqrstuvwxyz .,'\n"
#: Transition probabilities are multiples of 1/SYNTHETIC_QUANTUM, so that sampling with the top
#: 10 bits of a 64-bit random word is exact and the closed-form entropies are those of the text's
#: true source.
SYNTHETIC_QUANTUM = 1024
# Every state also gets this many random successors (besides its cyclic successor): sparse rows
# that a small model can learn, but not so few that the text is trivial.
_MIN_EXTRA, _MAX_EXTRA = 2, 6


@dataclass(frozen=True, eq=False)
class SyntheticText:
    """Text of a seeded first-order Markov chain, with its closed-form entropies (nats/char).

    `entropy_rate` = sum_i pi_i H(P_i.) is the best achievable loss; `unigram_entropy` = H(pi) is
    the loss of a model that knows only character frequencies.
    """

    text: str
    seed: int
    alphabet: str
    transition: np.ndarray = field(repr=False)  # (S, S), rows sum to 1
    stationary: np.ndarray = field(repr=False)  # (S,), pi P = pi
    unigram_entropy: float
    entropy_rate: float


def _bits(seed: int, stream: int, n: int) -> np.ndarray:
    # PCG64's raw output is stable across numpy versions (NEP 19), unlike Generator methods.
    return np.random.PCG64([seed, stream]).random_raw(n).astype(np.uint64)


def _transition_counts(seed: int) -> np.ndarray:
    """Integer transition weights (rows sum to SYNTHETIC_QUANTUM) of the seed's chain."""
    s = len(SYNTHETIC_ALPHABET)
    bits = iter(_bits(seed, 0, 64 * s).tolist())
    counts = np.zeros((s, s), dtype=np.int64)
    for i in range(s):
        # The cycle i -> i+1 makes the chain irreducible; the self-loop on 'l' makes it aperiodic.
        succ = [(i + 1) % s] + ([i] if SYNTHETIC_ALPHABET[i] == "l" else [])
        n_extra = _MIN_EXTRA + next(bits) % (_MAX_EXTRA - _MIN_EXTRA + 1)
        while len(succ) < n_extra + 1 + (SYNTHETIC_ALPHABET[i] == "l"):
            j = next(bits) % s
            if j not in succ:
                succ.append(j)
        w = np.array([1 + next(bits) % 15 for _ in succ], dtype=np.float64)
        exact = w / w.sum() * SYNTHETIC_QUANTUM
        q = np.floor(exact).astype(np.int64)
        # Largest remainders get the leftover units (stable sort: ties go to the earlier successor).
        for k in np.argsort(-(exact - q), kind="stable")[: SYNTHETIC_QUANTUM - q.sum()]:
            q[k] += 1
        counts[i, succ] = q
    return counts


def _stationary(p: np.ndarray) -> np.ndarray:
    s = len(p)
    a = p.T - np.eye(s)
    a[-1, :] = 1.0
    b = np.zeros(s)
    b[-1] = 1.0
    return np.linalg.solve(a, b)


def _entropy(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


@functools.lru_cache(maxsize=8)
def synthetic_corpus(n_chars: int = 500_000, seed: int = 0) -> SyntheticText:
    """`n_chars` characters of the seed's Markov chain over SYNTHETIC_ALPHABET, starting at a space.

    Deterministic on every machine: transition weights and samples come from PCG64 raw words.
    """
    if n_chars < 1:
        raise PyphaseError(f"n_chars must be at least 1, got {n_chars}")
    counts = _transition_counts(seed)
    p = counts / SYNTHETIC_QUANTUM
    pi = _stationary(p)
    rate = float(sum(pi[i] * _entropy(p[i]) for i in range(len(p))))
    # Row i of `table` lists successor j counts[i, j] times: a uniform 10-bit index picks j with
    # probability exactly counts[i, j] / 1024.
    table = [np.repeat(np.arange(len(p)), counts[i]).tolist() for i in range(len(p))]
    draws = (_bits(seed, 1, n_chars) >> np.uint64(64 - 10)).tolist()
    state = SYNTHETIC_ALPHABET.index(" ")
    out = []
    for r in draws:
        state = table[state][r]
        out.append(state)
    text = "".join(np.array(list(SYNTHETIC_ALPHABET))[out].tolist())
    return SyntheticText(text, seed, SYNTHETIC_ALPHABET, p, pi, _entropy(pi), rate)


# ------------------------------------------------------------------------------ downloads
@dataclass(frozen=True)
class Archive:
    url: str
    sha256: str
    folder: str  # what the archive unpacks to


# Canonical archives (Salesforce Research / Merity et al. 2016, CC BY-SA). URLs and sha256 from
# Hugging Face's huggingface/datasets, datasets/wikitext/dataset_infos.json ("download_checksums",
# commit 040102f100964a33fd334e2695f1c493fa6b92db). If the S3 bucket moves, pass a mirror with
# --url: the checksum is verified all the same.
ARCHIVES: dict[str, Archive] = {
    "wikitext-2": Archive(
        "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-raw-v1.zip",
        "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
        "wikitext-2-raw",
    ),
    "wikitext-2-tokenized": Archive(
        "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
        "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
        "wikitext-2",
    ),
}


def _download(url: str, part: Path) -> str:
    """Stream `url` into `part` with a progress bar; return the sha256 of what was written."""
    from tqdm import tqdm

    h = hashlib.sha256()
    got = 0
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=part.name, disable=None) as bar:
                while chunk := resp.read(1 << 16):
                    f.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
        if total is not None and got != total:
            raise PyphaseError(f"download of {url} failed: the connection closed after {got:,} of {total:,} bytes")
    except urllib.error.HTTPError as e:
        part.unlink(missing_ok=True)
        raise PyphaseError(f"download of {url} failed: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise PyphaseError(f"download of {url} failed: {reason}") from None
    except BaseException:  # Ctrl-C, a short read: no partial file is left behind
        part.unlink(missing_ok=True)
        raise
    return h.hexdigest()


def _unpack(zip_path: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(zip_path) as z:
            root = dest.resolve()
            for member in z.namelist():
                target = (dest / member).resolve()
                if root != target and root not in target.parents:
                    raise PyphaseError(f"archive {zip_path} has a member outside its folder: {member}")
            z.extractall(dest)
    except zipfile.BadZipFile as e:
        raise PyphaseError(f"archive {zip_path} is not a valid zip file: {e}") from None


def fetch(name: str, dest: str | Path, url: str | None = None) -> Path:
    """Download the known archive `name` into `dest`, verify its sha256, unpack, return its folder.

    The checksum is checked before anything is unpacked; on a mismatch the download is deleted.
    An archive already in `dest` with the right checksum is not downloaded again.
    """
    if name not in ARCHIVES:
        raise PyphaseError(f"unknown corpus {name!r}; known: {', '.join(sorted(ARCHIVES))}")
    arch = ARCHIVES[name]
    src = url or arch.url
    dest = Path(dest).expanduser()
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PyphaseError(f"cannot create destination folder {dest}: {e.strerror}") from None
    zip_path = dest / Path(urllib.request.urlparse(arch.url).path).name
    folder = dest / arch.folder
    if not zip_path.is_file() and folder.is_dir() and _wikitext_files(folder) is not None:
        # unpacked by hand or earlier, its archive gone: nothing to download, nothing to verify
        print(f"pyphase: {folder} already holds the splits (its archive is not there to verify): using it as it is",
              file=sys.stderr)
        return folder
    try:
        if not zip_path.is_file() or (local := sha256_file(zip_path)) != arch.sha256:
            if zip_path.is_file():
                print(f"pyphase: {zip_path} has sha256 {local}, expected {arch.sha256}: downloading it again",
                      file=sys.stderr)
            part = zip_path.with_name(zip_path.name + ".part")
            got = _download(src, part)
            if got != arch.sha256:
                part.unlink(missing_ok=True)
                raise PyphaseError(
                    f"sha256 mismatch for {src}: expected {arch.sha256}, got {got}; the download was deleted"
                )
            shutil.move(part, zip_path)
    except BaseException:
        if created and dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()  # a folder this call made and left empty
        raise
    _unpack(zip_path, dest)
    if not folder.is_dir():
        raise PyphaseError(f"archive {zip_path} did not unpack to {folder}")
    return folder


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, in hex (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
