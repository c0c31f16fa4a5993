"""Live Link Face takes into a corpus: `import_take` adds a take's parameters (resampled to the
model frame rate) and its audio to a corpus (``audio2anim data import-livelink``). The CSV
format itself is `audio2anim.formats.livelink_csv`.
"""

from __future__ import annotations

from pathlib import Path

from audio2anim.formats.livelink_csv import read_csv, resample_take


def import_take(
    csv_path: str | Path,
    audio_path: str | Path,
    corpus_path: str | Path,
    uid: str | None = None,
    voice: str = "livelink",
    transcript: str | None = None,
    frame_rate: float = 50.0,
    fps: float | None = None,
    offset: float = 0.0,
) -> dict:
    """Add one take to a corpus: audio, params at ``frame_rate``, phones.

    The first CSV row is taken to be at audio time ``offset`` (seconds). With a ``transcript``
    the phones come from forced alignment (`audio2anim.data.align`); without one the phones
    file is a single sil segment and the manifest entry says ``"phones": "none"`` (such
    utterances train the wav2vec method only; `make_viseme_ids` skips them).
    """
    from audio2anim.audio import read_audio

    from .corpus import SAMPLE_RATE, CorpusWriter, PhoneSegment, Utterance

    times, names, values, fps = read_csv(csv_path, fps)
    audio, _ = read_audio(audio_path, SAMPLE_RATE)
    duration = len(audio) / SAMPLE_RATE
    n = int(duration * frame_rate)
    params = resample_take(times + offset, values, fps, frame_rate, n)
    uid = uid or Path(csv_path).stem
    extra: dict = {"take_fps": fps, "take_frames": int(len(times))}
    if transcript:
        from .align import align

        segments = align(audio, SAMPLE_RATE, transcript)
        phoneset = "arpabet"
    else:
        segments = [PhoneSegment(0.0, duration, "sil")]
        phoneset = "arpabet"
        extra["phones"] = "none"
    utt = Utterance(uid, voice, transcript or "", duration, phoneset, "livelink", extra)
    with CorpusWriter(corpus_path) as writer:
        writer.add(
            utt, audio, segments, {"names": names, "values": params, "frame_rate": frame_rate}
        )
    return {"id": uid, "frames": n, "duration": duration, "take_fps": fps, "columns": len(names)}
