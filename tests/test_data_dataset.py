"""Dataset steps: viseme IDs, teacher arrays, append, softmax, normalize, split, info."""

import numpy as np
import pytest

from audio2anim import arkit
from audio2anim.data import dataset as D
from audio2anim.data.corpus import Corpus, CorpusWriter
from audio2anim.data.synth import SynthOptions, make_job, run_job
from audio2anim.visemes import viseme_ids

VOICES = ("espeak:en-us", "espeak:en+f2", "espeak:en-029+m2", "festival:kal")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus")
    opts = SynthOptions(voices=VOICES, seed=3)
    with CorpusWriter(path) as writer:
        for i in range(8):
            writer.add(*run_job(make_job(i, opts)))
    return Corpus(path)


@pytest.fixture(scope="module")
def ds(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "ds"
    assert D.make_viseme_ids(corpus.path, out, 50.0, progress=False) == 8
    counts = D.teach(corpus.path, out, 50.0, seed=0, workers=1, progress=False)
    assert counts == {"teacher": 8, "captured": 0}
    return D.Dataset(out)


def test_viseme_ids_and_teacher_arrays(corpus, ds):
    assert set(ds.arrays()) == {"viseme_ids", "mouth", "eyes"}
    assert ds.arrays()["mouth"]["names"] == list(arkit.MOUTH)
    for utt in corpus.utterances:
        shard = ds.load(utt.id)
        n = int(utt.duration * 50)
        assert shard["viseme_ids"].shape == (n,) and shard["viseme_ids"].dtype == np.int64
        expected = viseme_ids(corpus.phones(utt.id), utt.phoneset, 50.0, n)
        assert np.array_equal(shard["viseme_ids"], expected)
        assert shard["mouth"].shape == (n, len(arkit.MOUTH)) and shard["eyes"].shape == (
            n,
            len(arkit.EYES),
        )
        assert shard["mouth"].min() >= 0.0 and shard["mouth"].max() <= 1.0
    # the teacher is deterministic: teaching again rewrites the same values
    before = ds.array(ds.ids[0], "mouth")
    D.teach(corpus.path, ds.path, 50.0, seed=0, workers=2, progress=False)
    assert np.array_equal(before, D.Dataset(ds.path).array(ds.ids[0], "mouth"))


def test_append_concatenates_with_boundaries(ds):
    res = D.append(ds, "mouth")
    assert res["offsets"][0] == 0 and res["offsets"][-1] == len(res["data"])
    assert list(res["ids"]) == ds.ids
    back = D.split_appended(res)
    for uid in ds.ids:
        assert np.array_equal(back[uid], ds.array(uid, "mouth"))
    sub = D.append(ds, "viseme_ids", ds.ids[2:4])
    assert len(sub["data"]) == sum(len(ds.array(u, "viseme_ids")) for u in ds.ids[2:4])
    with pytest.raises(ValueError, match="nope"):
        D.append(ds, "nope")


def test_softmax_is_stable_and_normalized(ds):
    x = np.array([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]])
    y = D.softmax(x)
    assert np.all(np.isfinite(y)) and np.allclose(y.sum(axis=1), 1.0, atol=1e-6)
    small = np.array([[0.1, 0.2, 0.7]])
    assert np.allclose(D.softmax(small), np.exp(small) / np.exp(small).sum(), atol=1e-6)
    assert np.allclose(D.softmax(x[:1]), D.softmax(x[:1] - 1000), atol=1e-6)
    D.softmax_array(ds, "eyes", "eyes_softmax")
    z = ds.array(ds.ids[0], "eyes_softmax")
    assert z.shape == ds.array(ds.ids[0], "eyes").shape and np.allclose(z.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_normalize_unnormalize_round_trip(ds, method):
    train = ds.ids[:6]
    stats = D.normalize(ds, "mouth", method, out_name=f"mouth_{method}", fit_ids=train)
    assert D.load_stats(ds, "mouth") == stats and stats["fit_utterances"] == 6
    fitted = D.append(ds, f"mouth_{method}", train)["data"]
    if method == "minmax":
        assert fitted.min() >= -1e-6 and fitted.max() <= 1 + 1e-6
    else:
        moving = np.array(stats["std"]) > 1e-6
        assert np.allclose(fitted[:, moving].mean(axis=0), 0, atol=1e-4)
        assert np.allclose(fitted[:, moving].std(axis=0), 1, atol=1e-3)
    for uid in ds.ids:
        original = ds.array(uid, "mouth")
        restored = D.unnormalize(ds.array(uid, f"mouth_{method}"), stats)
        assert np.allclose(restored, original, atol=1e-5)


def test_split_never_shares_an_utterance_or_voice(ds):
    by_utt = D.split(ds.utterances, "utterance", 0.25, seed=1)
    assert not set(by_utt["train"]) & set(by_utt["test"])
    assert sorted(by_utt["train"] + by_utt["test"]) == sorted(ds.ids) and len(by_utt["test"]) == 2
    assert D.split(ds.utterances, "utterance", 0.25, seed=1) == by_utt
    assert any(
        D.split(ds.utterances, "utterance", 0.25, seed=s)["test"] != by_utt["test"]
        for s in range(2, 6)
    )
    by_voice = D.split(ds.utterances, "voice", 0.25, seed=0)
    voice = {u["id"]: u["voice"] for u in ds.utterances}
    train_voices = {voice[i] for i in by_voice["train"]}
    test_voices = {voice[i] for i in by_voice["test"]}
    assert test_voices and train_voices and not train_voices & test_voices
    with pytest.raises(ValueError, match="utterance or voice"):
        D.split(ds.utterances, "frame")


def test_info_counts_hours_voices_visemes(corpus, ds):
    for path in (corpus.path, ds.path):
        summary = D.info(path)
        assert summary["utterances"] == 8
        assert summary["voices"] == sorted(VOICES)
        total_frames = sum(int(u.duration * 50) for u in corpus.utterances)
        assert sum(summary["viseme_frames"].values()) == total_frames
        assert abs(summary["hours"] - corpus.hours()) < 0.001


def test_frame_count_agrees_with_the_teacher_for_rounded_durations():
    for samples in range(150000, 170000, 7):
        duration = round(samples / 16000, 6)  # as the corpus manifest stores it
        for rate in (25.0, 30.0, 50.0, 60.0):
            assert D.frame_count(duration, rate) == int(samples / 16000 * rate)
