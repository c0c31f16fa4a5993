"""The Whisper viseme front end in ONNX Runtime (`audio2anim.models.whisper_onnx`): the numpy
log-mel equals the torch recipe, the encoder's export takes windows of any length up to 30 s,
the front end gives the torch front end's posteriors over one window and over many, the cache
entry follows the model's files, two processes starting cold export once and print one line,
and `animate`'s CSV equals the torch path's on the shipped clip and on espeak-ng speech."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import swelling_tone

from audio2anim.models import whisper_mel
from audio2anim.models.checkpoint import save
from audio2anim.models.onnx_export import cache_dir, cached_whisper_encoder, whisper_encoder_key
from audio2anim.models.whisper import log_mel as torch_log_mel
from audio2anim.models.whisper_head import WhisperVisemeHead, WhisperVisemes, shared_whisper
from audio2anim.models.whisper_onnx import OnnxWhisperVisemes

WIDTH = 16
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_head(tmp_path_factory):
    torch.manual_seed(2)
    head = WhisperVisemeHead(width=WIDTH, layers=(-1, 1), context=1, hidden=8,
                             viseme_bias={"PP": 1.0})  # fmt: skip
    head.set_normalization(torch.randn(head.in_mean.shape[0]) * 0.1, torch.ones(96) * 0.5)
    return save(head, tmp_path_factory.mktemp("ckpt") / "whisper-viseme-head")


def speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """`swelling_tone` with a stretch of digital silence."""
    x = swelling_tone(int(seconds * 16000), seed=seed)
    x[len(x) // 3 : len(x) // 2] = 0.0
    return x


def test_the_mel_filters_are_whispers():
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(num_frequency_bins=201, num_mel_filters=80, min_frequency=0.0,
                          max_frequency=8000.0, sampling_rate=16000, norm="slaney",
                          mel_scale="slaney")  # fmt: skip
    np.testing.assert_allclose(whisper_mel.mel_filters(80), ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("seconds", [0.02, 0.64, 3.3, 30.0])
def test_the_numpy_log_mel_equals_the_torch_recipe(seconds):
    x = speechlike(seconds)
    filters = whisper_mel.mel_filters(80)
    ref = torch_log_mel(x, torch.from_numpy(filters)).numpy()
    got = whisper_mel.log_mel(x, filters)
    assert got.shape == ref.shape == (80, len(x) // 160)
    np.testing.assert_allclose(got, ref, atol=1e-4)  # float32 sums in another order


def test_the_encoder_export_takes_windows_of_any_length(tiny_whisper):
    onnx = cached_whisper_encoder(tiny_whisper, [-1, 1])
    whisper = shared_whisper(str(tiny_whisper))
    filters = whisper_mel.mel_filters(80)
    for frames in (1, 37, 500, 1500):
        x = speechlike(frames * 0.02, seed=frames)
        with torch.inference_mode():
            states = whisper.encode(x, layers=True)
            ref = torch.cat([states[-1], states[1]], -1).numpy()
        got = onnx.states(whisper_mel.log_mel(x, filters)[None])[0]
        assert got.shape == ref.shape == (frames, 2 * WIDTH)
        np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize(
    "window", [{}, {"window_s": 2.0, "hop_s": 1.0, "lookahead_s": 0.5},
               {"window_s": 1.0, "hop_s": 0.04, "lookahead_s": 0.2}],
)  # fmt: skip
def test_the_onnx_front_end_gives_the_torch_posteriors(tiny_whisper, tiny_head, window):
    audio = speechlike(3.3)
    ref = WhisperVisemes(tiny_head, tiny_whisper).posteriors(audio, **window)
    front = OnnxWhisperVisemes(tiny_head, tiny_whisper)
    got = front.posteriors(audio, **window)
    assert got.shape == ref.shape == (len(audio) // 320, 15)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # blocks do not matter
    s = front.stream(**window)
    blocks = [s.push(b) for b in np.array_split(audio, 17)] + [s.flush()]
    np.testing.assert_allclose(np.concatenate(blocks), got, atol=1e-6)
    # the bias replaced, as on the torch head
    torch_front = WhisperVisemes(tiny_head, tiny_whisper)
    torch_front.head.set_viseme_bias({"SS": -2.0})
    front.set_viseme_bias({"SS": -2.0})
    np.testing.assert_allclose(
        front.posteriors(audio, **window), torch_front.posteriors(audio, **window), atol=1e-5
    )
    with pytest.raises(ValueError, match="unknown viseme 'ZZ'"):
        front.set_viseme_bias({"ZZ": 1.0})


def test_the_cache_entry_follows_the_model_files(tiny_whisper, tmp_path):
    import shutil

    copy = Path(shutil.copytree(tiny_whisper, tmp_path / "w"))
    key = whisper_encoder_key(copy, [-1, 1])
    assert whisper_encoder_key(copy, [-1, 1]) == key
    assert whisper_encoder_key(copy, [-1]) != key
    config = copy / "config.json"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # replaced by a newer one
    assert whisper_encoder_key(copy, [-1, 1]) != key


def test_two_cold_processes_export_once_and_say_so_once(tiny_whisper, tmp_path):
    code = (
        "import sys; from audio2anim.models.onnx_export import cached_whisper_encoder; "
        "m = cached_whisper_encoder(sys.argv[1], [-1]); print(m.path.name)"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
           "AUDIO2ANIM_CACHE": str(tmp_path / "cache")}  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tiny_whisper)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]  # fmt: skip
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    names = {out.strip() for out, _ in outs}
    notices = "".join(err for _, err in outs).count("preparing the Whisper encoder")
    assert len(names) == 1 and notices == 1, outs
    entries = sorted(p.name for p in (tmp_path / "cache" / "onnx").iterdir())
    stem = names.pop().removesuffix(".onnx")
    assert entries == [f"{stem}.json", f"{stem}.onnx"]


def test_the_cache_lives_where_the_setting_says(tiny_whisper, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIO2ANIM_CACHE", str(tmp_path / "elsewhere"))
    model = cached_whisper_encoder(tiny_whisper, [-1])
    assert model.path.parent == cache_dir() == tmp_path / "elsewhere" / "onnx"


def _csv_values(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def test_animate_csv_equals_the_torch_paths(tmp_path):
    """The default graph (ONNX) against the same graph with the front end in torch, with the
    packaged tiny.en and the shipped head, on the shipped clip and on an espeak-ng sentence."""
    import soundfile as sf
    from tiny_models import speak

    from audio2anim import Animator
    from audio2anim.animate.outputs import write_output
    from audio2anim.sources.file import SHIPPED_SPEECH

    audio, sr, _ = speak("Bob bought a big blue map of the moon for Pam.")
    sentence = tmp_path / "sentence.wav"
    sf.write(sentence, audio, sr)
    onnx, torch_path = Animator(warm_up=False), Animator(overrides=["vis.backend=torch"],
                                                         warm_up=False)  # fmt: skip
    for clip in (SHIPPED_SPEECH, sentence):
        t0 = time.perf_counter()
        a, b = tmp_path / f"{clip.stem}-onnx.csv", tmp_path / f"{clip.stem}-torch.csv"
        write_output(a, onnx.animate(clip))
        write_output(b, torch_path.animate(clip))
        va, vb = _csv_values(a), _csv_values(b)
        assert va.shape == vb.shape and len(va) > 50, time.perf_counter() - t0
        np.testing.assert_allclose(va, vb, atol=1e-3)
        assert va[:, 1:].max() > 0.2  # the face moves


def test_the_operator_runs_an_offline_head_in_onnx_runtime(tiny_whisper, tiny_head):
    from audio2anim.graph.testing import audio_packets, run_operator

    audio = speechlike(3.3)
    params = {"model": str(tiny_head), "encoder": str(tiny_whisper), "window_s": 1.0,
              "hop_s": 0.1, "lookahead_s": 0.2, "viseme_bias": {"PP": 2.0}}  # fmt: skip
    outs = {
        backend: run_operator("feature.whisper_visemes", audio_packets(audio, 16000, block=700),
                              {**params, "backend": backend})["out"]
        for backend in ("onnx", "torch")
    }  # fmt: skip
    assert [p.media_time for p in outs["onnx"]] == [p.media_time for p in outs["torch"]]
    probs = {k: np.concatenate([p.payload.probs for p in v]) for k, v in outs.items()}
    assert probs["onnx"].shape == (len(audio) // 320, 15)
    np.testing.assert_allclose(probs["onnx"], probs["torch"], atol=1e-5)
