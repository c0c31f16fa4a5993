"""The shipped checkpoints load and animate synthesized speech (skipped until they exist)."""

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from audio2anim.models.checkpoint import MODELS

CKPT = Path(__file__).resolve().parents[1] / "audio2anim" / "checkpoints"

pytestmark = pytest.mark.skipif(
    not all((CKPT / m / "config.json").is_file() for m in MODELS),
    reason="no shipped checkpoints yet",
)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    if not shutil.which("espeak-ng"):
        pytest.skip("espeak-ng not installed")
    from scipy.signal import resample_poly

    wav = tmp_path_factory.mktemp("tts") / "s.wav"
    text = "Bob bought a blue boat, and Maya opened the old map."
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    g = np.gcd(rate, 16000)
    return resample_poly(x, 16000 // g, rate // g).astype(np.float32)


def test_total_size_budget():
    total = sum(f.stat().st_size for m in MODELS for f in (CKPT / m).iterdir() if f.is_file())
    assert total <= 30e6


def test_pipelines_animate_speech(speech):
    from audio2anim.models.checkpoint import load
    from audio2anim.models.logmel import logmel
    from audio2anim.models.viseme_frontend import downsample_posteriors
    from audio2anim.models.wav2vec import load_wav2vec2

    front, _ = load(CKPT / "viseme-frontend")
    probs = front.posteriors(logmel(speech))
    assert probs.shape == (len(speech) // 160, 15)
    ids = probs.argmax(-1)
    assert len(set(ids.tolist())) >= 5  # speech, not one class
    loud = np.convolve(speech**2, np.ones(160) / 160, "same")[::160][: len(ids)] > 1e-3
    assert (ids[loud] != 0).mean() > 0.7  # voiced frames are mostly not silence
    post50 = downsample_posteriors(probs)
    for m in MODELS[2:]:
        model, side = load(CKPT / m)
        if m.startswith("viseme"):
            x = post50
        else:  # the wav2vec2 output the predictor was trained on (its sidecar says which)
            w2v = load_wav2vec2(CKPT / "wav2vec2", feature=side["feature"]["feature"])
            x = w2v.features(speech)
            assert x.shape == (len(speech) // 320, w2v.feature_dim)
        params = model.predict(x)
        assert params.shape == (len(x), 30) and params.min() >= 0 and params.max() <= 1
        jaw = params[:, side["param_names"].index("jawOpen")]
        assert jaw.std() > 0.02, m  # the jaw moves with the speech


WHISPER_FED = ("whisper-w2v-cnn", "whisper-w2v-ar", "whisper-w2v-attention")


def test_the_whole_checkpoints_folder_stays_within_50_mb():
    total = sum(f.stat().st_size for f in CKPT.rglob("*") if f.is_file())
    assert total <= 50e6


def test_whisper_fed_predictors_animate_speech(speech):
    """The w2v predictors trained on the Whisper head's posteriors, fed by that head (the
    packaged tiny.en encoder: a few seconds to load)."""
    from audio2anim.models.checkpoint import load
    from audio2anim.models.whisper_head import WhisperVisemes
    from audio2anim.visemes import VISEME_PROBS

    head = WhisperVisemes(CKPT / "whisper-viseme-head")
    probs = head.posteriors(speech)
    for m in WHISPER_FED:
        model, side = load(CKPT / m)
        assert side["feature"]["kind"] == VISEME_PROBS and side["kind"] == m[len("whisper-") :]
        assert (CKPT / m / side["frontend"]).resolve() == (CKPT / "whisper-viseme-head").resolve()
        params = model.predict(probs)
        assert params.shape == (len(probs), 30) and params.min() >= 0 and params.max() <= 1
        jaw = params[:, side["param_names"].index("jawOpen")]
        assert jaw.std() > 0.02, m  # the jaw moves with the speech
