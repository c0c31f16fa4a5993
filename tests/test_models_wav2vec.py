"""The wav2vec2 front end: HF loading, equality with the HF forward, bounded chunked context."""

import numpy as np
import pytest
import torch
from tiny_models import W2V_TINY
from torch.nn import functional as F

from audio2anim.models.wav2vec import (
    LEFT_PAD,
    PHONE_VOCAB,
    Wav2Vec2FrontEnd,
    build_small,
    load_wav2vec2,
    phone_label,
    small_config,
)


def _audio(seconds=1.6, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 200 * t) + 0.05 * rng.standard_normal(len(t))).astype(
        np.float32
    )


@pytest.mark.parametrize("stable", [True, False])
def test_unchunked_run_equals_hf_forward(stable):
    front = build_small(
        chunk_frames=None, do_stable_layer_norm=stable, feat_extract_norm="layer", **W2V_TINY
    ).eval()
    x = F.pad(torch.as_tensor(_audio())[None], (LEFT_PAD, 0))
    with torch.no_grad():
        ref = front.model(x, output_hidden_states=True)
        for layer in range(3):
            logits, hidden = front.run(x, hidden_layer=layer, chunked=False)
            torch.testing.assert_close(hidden, ref.hidden_states[layer], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits, ref.logits, atol=1e-5, rtol=1e-5)


def test_hf_directory_loads_with_from_pretrained(tmp_path):
    """A plain HF checkpoint dir (save_pretrained of a Wav2Vec2ForCTC built from a config)."""
    from transformers import Wav2Vec2ForCTC

    torch.manual_seed(0)
    hf = Wav2Vec2ForCTC(small_config(vocab_size=12, **W2V_TINY)).eval()
    hf.save_pretrained(tmp_path / "hf")
    front = load_wav2vec2(tmp_path / "hf")
    assert isinstance(front, Wav2Vec2FrontEnd)
    assert front.chunk_frames is None  # foreign checkpoints run with full attention
    assert front.vocab == [str(i) for i in range(12)]
    audio = _audio()
    feats = front.features(audio)
    assert feats.shape == (len(audio) // 320, 12)
    np.testing.assert_allclose(feats.sum(-1), 1, atol=1e-5)
    with torch.no_grad():
        ref = torch.softmax(hf(F.pad(torch.as_tensor(audio)[None], (LEFT_PAD, 0))).logits, -1)[0]
    np.testing.assert_allclose(feats, ref.numpy()[: len(feats)], atol=1e-5)
    hidden = load_wav2vec2(tmp_path / "hf", feature="hidden-1").features(audio)
    assert hidden.shape == (len(audio) // 320, 32)
    with pytest.raises(ValueError, match="hidden-N"):
        load_wav2vec2(tmp_path / "hf", feature="hidden-9")


def test_chunked_attention_bounds_right_context():
    front = build_small(chunk_frames=4, left_chunks=2, **W2V_TINY).eval()
    audio = _audio(2.0)
    base = front.features(audio)
    k = 50  # change the audio from frame 50 on
    changed_audio = audio.copy()
    changed_audio[k * 320 :] = _audio(2.0, seed=5)[k * 320 :]
    changed = np.abs(front.features(changed_audio) - base).max(-1) > 1e-6
    first = int(np.argmax(changed))
    assert changed[k:].all()
    # frames more than `lookahead_frames` before the change see none of it
    assert first >= k - front.lookahead_frames, (first, front.lookahead_frames)
    # full attention would let every frame see the change
    full = Wav2Vec2FrontEnd(front.model, chunk_frames=None).eval()
    assert (np.abs(full.features(changed_audio) - full.features(audio)).max(-1) > 1e-6)[:10].all()


def test_phone_labels():
    assert PHONE_VOCAB[0] == "<pad>" and PHONE_VOCAB[1] == "sil" and len(PHONE_VOCAB) == 41
    assert PHONE_VOCAB[phone_label("AH0", "arpabet")] == "AH"
    assert PHONE_VOCAB[phone_label("m", "espeak")] == "M"
    assert PHONE_VOCAB[phone_label("u:", "espeak")] == "UW"
    assert PHONE_VOCAB[phone_label("tS", "espeak")] == "CH"
    assert phone_label("sil", "arpabet") == 1 and phone_label("_", "espeak") == 1


@pytest.mark.parametrize(
    ("stable", "feature", "blocks"),
    [
        (True, "posteriors", [320]),
        (True, "hidden-1", [1000, 7, 5000]),
        (False, "posteriors", [4321]),
        (False, "hidden-0", [160]),
        (True, "posteriors+hidden-2", [900, 333]),
    ],
)
def test_stream_equals_full_pass(stable, feature, blocks):
    from audio2anim.models.wav2vec_stream import Wav2Vec2Stream

    torch.manual_seed(0)
    front = build_small(
        chunk_frames=3, left_chunks=2, do_stable_layer_norm=stable, **W2V_TINY
    ).eval()
    front.feature = feature
    audio = _audio(1.37)
    full = front.features(audio)
    stream = Wav2Vec2Stream(front)
    parts, i, k = [], 0, 0
    while i < len(audio):
        n = blocks[k % len(blocks)]
        parts.append(stream.push(audio[i : i + n]))
        i, k = i + n, k + 1
    parts.append(stream.flush())
    out = np.concatenate(parts)
    assert out.shape == full.shape
    np.testing.assert_allclose(out, full, atol=2e-5)


def test_stream_refuses_unstreamable_models():
    from audio2anim.models.wav2vec_stream import Wav2Vec2Stream

    # a full-attention model cannot be streamed exactly: it gets the windowed approximation
    assert not Wav2Vec2Stream(build_small(chunk_frames=None, **W2V_TINY)).chunked
    with pytest.raises(ValueError, match="feat_extract_norm='layer'"):
        Wav2Vec2Stream(build_small(feat_extract_norm="group", **W2V_TINY))
