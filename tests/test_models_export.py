"""export-data on a small corpus written with the data package's CorpusWriter."""

import json

import numpy as np
import pytest

from audio2anim.data.corpus import CorpusWriter, PhoneSegment, Utterance
from audio2anim.models.wav2vec import PHONE_VOCAB
from audio2anim.train.data import export_data, load_data
from audio2anim.visemes import viseme_ids

WORDS = [
    [("sil", 0.1), ("HH", 0.08), ("AH0", 0.12), ("L", 0.07), ("OW1", 0.2), ("sil", 0.1)],
    [("sil", 0.05), ("M", 0.1), ("AA1", 0.2), ("M", 0.09), ("AH0", 0.1), ("sil", 0.15)],
    [("sil", 0.1), ("B", 0.06), ("UW1", 0.22), ("T", 0.08), ("sil", 0.1)],
]


def _write_corpus(path, n_voices=3, reps=2, rate=16000):
    rng = np.random.default_rng(0)
    with CorpusWriter(path, rate) as w:
        for v in range(n_voices):
            for r in range(reps):
                for k, word in enumerate(WORDS):
                    t, segs = 0.0, []
                    for ph, d in word:
                        segs.append(PhoneSegment(round(t, 4), round(t + d, 4), ph))
                        t += d
                    n = int(round(t * rate))
                    audio = (0.2 * np.sin(2 * np.pi * (120 + 30 * v) * np.arange(n) / rate)).astype(
                        np.float32
                    )
                    audio += 0.01 * rng.standard_normal(n).astype(np.float32)
                    utt = Utterance(f"v{v}-{r}-{k}", f"voice{v}", "x", t, "arpabet", "aligned")
                    w.add(utt, audio, segs)
    return path


def test_export_matches_corpus(tmp_path):
    corpus = _write_corpus(tmp_path / "corpus")
    meta = export_data(corpus, tmp_path / "export", max_mb=None)
    assert meta["summary"]["utterances"] == 18 and not meta["summary"]["cut_by_budget"]
    data = load_data(tmp_path / "export")
    by_id = {u.id: u for u in data.utterances}
    u = by_id["v1-0-1"]  # sil M AA M AH sil
    assert u.frames == 34  # 0.69 s = 11040 samples → 34 whole 20 ms frames
    assert len(u.audio) == 320 * u.frames
    segs = [
        (s, e, p)
        for s, e, p in zip(
            u.seg_start, u.seg_end, [PHONE_VOCAB[i] for i in u.seg_label], strict=True
        )
    ]
    assert [p for _, _, p in segs] == ["sil", "M", "AA", "M", "AH", "sil"]
    assert u.seg_class.tolist() == [0, 1, 3, 1, 3, 0]  # bilabial M, open AA/AH
    phones = [
        (0.0, 0.05, "sil"),
        (0.05, 0.15, "M"),
        (0.15, 0.35, "AA1"),
        (0.35, 0.44, "M"),
        (0.44, 0.54, "AH0"),
        (0.54, 0.69, "sil"),
    ]
    np.testing.assert_array_equal(u.vis50, viseme_ids(phones, "arpabet", 50, u.frames))
    np.testing.assert_array_equal(u.vis100, viseme_ids(phones, "arpabet", 100, 2 * u.frames))
    assert u.targets.shape == (u.frames, 30) and u.targets.min() >= 0 and u.targets.max() <= 1
    assert u.targets[:, 0].max() > 0.1  # the teacher opens the jaw on AA
    assert [PHONE_VOCAB[i] for i in u.ctc_labels()] == ["M", "AA", "M", "AH"]
    # the audio survives µ-law + lzma closely
    from audio2anim.data.corpus import Corpus

    original = Corpus(corpus).audio("v1-0-1")[: len(u.audio)]
    err = np.abs(u.audio - original)
    assert (
        err.max() < 0.03 * np.abs(original).max() and np.corrcoef(u.audio, original)[0, 1] > 0.999
    )


def test_export_resamples_a_48khz_corpus(tmp_path):
    """A corpus of 48 kHz recordings exports at 16 kHz: same frames, same timing as 16 kHz."""
    at16 = load_data(_write_corpus(tmp_path / "c16", n_voices=1, reps=1)).utterances
    at48 = load_data(_write_corpus(tmp_path / "c48", n_voices=1, reps=1, rate=48000)).utterances
    for a, b in zip(
        sorted(at16, key=lambda u: u.id), sorted(at48, key=lambda u: u.id), strict=True
    ):
        assert b.frames == a.frames and len(b.audio) == len(a.audio)
        np.testing.assert_array_equal(b.vis50, a.vis50)
        assert np.abs(b.targets[:, :19] - a.targets[:, :19]).max() < 0.05  # mouth: same timing
        assert np.corrcoef(a.audio, b.audio)[0, 1] > 0.95


def test_export_budget_and_corpus_cache(tmp_path, capsys):
    corpus = _write_corpus(tmp_path / "corpus")
    meta = export_data(corpus, tmp_path / "small", max_mb=0.03)
    s = meta["summary"]
    assert s["cut_by_budget"] and 0 < s["utterances"] < 18
    assert s["bytes"] <= 0.03 * 2**20 * 1.05
    # voices are interleaved, so even a small export has every voice
    assert len({e["voice"] for e in meta["utterances"]}) == 3
    # a corpus directory as --data: exported once into CORPUS/cache, then reused
    data = load_data(corpus)
    cache = corpus / "cache" / "training-data" / "export.json"
    assert cache.is_file() and len(data.utterances) == 18
    stamp = cache.stat().st_mtime_ns
    load_data(corpus)
    assert cache.stat().st_mtime_ns == stamp
    manifest = json.loads((corpus / "manifest.json").read_text())
    manifest["utterances"] = manifest["utterances"][:6]
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    assert len(load_data(corpus).utterances) == 6  # a changed manifest re-exports
    # a cap of 0 would export nothing: refused, not an empty export
    from audio2anim.cli import main

    argv = ["train", "export-data", "--data", str(corpus), "--out", str(tmp_path / "x")]
    assert main([*argv, "--max-mb", "0"]) == 2
    assert "size cap must be positive" in capsys.readouterr().err
    assert not (tmp_path / "x" / "export.json").exists()


def test_export_reports_bad_phone(tmp_path):
    corpus = _write_corpus(tmp_path / "corpus", n_voices=1, reps=1)
    tsv = corpus / "phones" / "v0-0-0.tsv"
    tsv.write_text(tsv.read_text().replace("HH", "QQ"))
    with pytest.raises(ValueError, match="v0-0-0"):
        export_data(corpus, tmp_path / "export", max_mb=None)
