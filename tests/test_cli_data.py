"""`pyphase data stats` and `pyphase data fetch` through the console entry point: table and JSON
output, and every user error as one line on stderr with exit code 2 (no traceback)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pyphase import _core, cli, data
from pyphase.data import Archive


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `pyphase.cli.main` in-process as the console script would; return (code, out, err)."""
    monkeypatch.setattr(sys, "argv", ["pyphase", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    out, err = capsys.readouterr()
    code = exc.value.code if isinstance(exc.value.code, int) else (0 if exc.value.code is None else 1)
    return code, out, err


@pytest.fixture()
def corpus_file(tmp_path: Path) -> Path:
    p = tmp_path / "c.txt"
    p.write_text(data.synthetic_corpus(20_000, 2).text, encoding="utf-8")
    return p


def test_stats_json(monkeypatch, capsys, corpus_file: Path) -> None:
    code, out, err = run_main(monkeypatch, capsys, "data", "stats", str(corpus_file), "--json")
    assert code == 0, err
    s = json.loads(out)
    text = corpus_file.read_text(encoding="utf-8")
    tok = _core.CharTokenizer.from_text(text)
    assert s["bytes"] == s["chars"] == len(text) and s["vocab_size"] == tok.vocab_size
    assert s["sha256"] == hashlib.sha256(corpus_file.read_bytes()).hexdigest()
    assert [s["unigram_entropy"], s["bigram_entropy"], s["trigram_entropy"]] == _core.ngram_entropies(tok.encode(text), 3)
    assert s["encode_mb_per_s"] > 0


def test_stats_table(monkeypatch, capsys, corpus_file: Path) -> None:
    code, out, err = run_main(monkeypatch, capsys, "data", "stats", str(corpus_file))
    assert code == 0, err
    s = data.corpus_stats(corpus_file, repeats=1)
    assert f"{s['bytes']:,}" in out and f"{s['unigram_entropy']:.4f} nats/char" in out
    assert f"{s['bigram_entropy']:.4f} nats/char" in out and "MB/s" in out
    assert [line.split()[0] for line in out.splitlines()][:3] == ["path", "sha256", "bytes"]


def make_bad_input(folder: Path, kind: str) -> Path:
    p = folder / kind
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "latin1":
        p.write_bytes(b"ok\xff")
    elif kind == "folder":
        p.mkdir()
    return p


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("missing", r"error: corpus not found: "),
        ("empty", r"error: corpus is empty: "),
        ("latin1", r"error: corpus is not UTF-8: .* byte offset 2"),
        ("folder", r"error: folder .* holds no WikiText splits"),
    ],
)
def test_stats_errors_are_one_line_exit_2(monkeypatch, capsys, tmp_path: Path, kind: str, needle: str) -> None:
    code, out, err = run_main(monkeypatch, capsys, "data", "stats", str(make_bad_input(tmp_path, kind)))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.match(needle, err), err


def test_fetch_unknown_name_is_one_line_exit_2(monkeypatch, capsys, tmp_path: Path) -> None:
    code, _, err = run_main(monkeypatch, capsys, "data", "fetch", "penn-treebank", "--dest", str(tmp_path))
    assert code == 2
    assert err.strip() == "error: unknown corpus 'penn-treebank'; known: wikitext-2, wikitext-2-tokenized"


def test_fetch_from_mirror_url(monkeypatch, capsys, tmp_path: Path) -> None:
    # file:// URLs go through the same urllib download and checksum path as http://, no network.
    import zipfile

    z = tmp_path / "mirror.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("wikitext-2/wiki.train.tokens", "a b c\n" * 50)
        f.writestr("wikitext-2/wiki.valid.tokens", "c b a\n" * 10)
    digest = hashlib.sha256(z.read_bytes()).hexdigest()
    monkeypatch.setitem(data.ARCHIVES, "wikitext-2-tokenized", Archive("http://127.0.0.1:9/wikitext-2-v1.zip", digest, "wikitext-2"))
    code, out, err = run_main(
        monkeypatch, capsys, "data", "fetch", "wikitext-2-tokenized", "--dest", str(tmp_path / "d"), "--url", z.as_uri()
    )
    assert code == 0, err
    assert out.strip() == f"wikitext-2-tokenized: verified and unpacked to {tmp_path / 'd' / 'wikitext-2'}"
    assert (tmp_path / "d" / "wikitext-2" / "wiki.valid.tokens").read_text() == "c b a\n" * 10


def test_fetch_checksum_mismatch_is_one_line_exit_2(monkeypatch, capsys, tmp_path: Path) -> None:
    z = tmp_path / "x.zip"
    z.write_bytes(b"PK not really")
    monkeypatch.setitem(data.ARCHIVES, "wikitext-2", Archive("http://127.0.0.1:9/wikitext-2-raw-v1.zip", "f" * 64, "wikitext-2-raw"))
    code, _, err = run_main(monkeypatch, capsys, "data", "fetch", "wikitext-2", "--dest", str(tmp_path / "d"), "--url", z.as_uri())
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: sha256 mismatch for {z.as_uri()}: expected {'f' * 64}, got ")
    assert not (tmp_path / "d").exists()  # the folder this fetch made is removed with nothing in it


def test_console_script_end_to_end(corpus_file: Path, tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "pyphase", "data", "stats", str(corpus_file), "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["chars"] == 20_000
    bad = subprocess.run([sys.executable, "-m", "pyphase", "data", "stats", str(tmp_path / "nope.txt")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip() == f"error: corpus not found: {tmp_path / 'nope.txt'}"
