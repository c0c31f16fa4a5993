"""Viseme tables: complete for ARPAbet and for every phoneme espeak-ng reports for English."""

import numpy as np
import pytest

from audio2anim.data.corpus import PhoneSegment
from audio2anim.visemes import VISEMES, known_phones, phone_class, viseme_ids, viseme_of

ARPABET_CMUDICT = str.split(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH "
    "UW V W Y Z ZH"
)


def test_oculus_order():
    assert VISEMES == (
        "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou",
    )  # fmt: skip


def test_every_cmudict_phone_with_stress_maps():
    for phone in ARPABET_CMUDICT:
        for stress in ("", "0", "1", "2"):
            assert 0 <= viseme_of(phone + stress, "arpabet") < 15
    assert viseme_of("P", "arpabet") == VISEMES.index("PP")
    assert viseme_of("uw1", "arpabet") == VISEMES.index("ou")
    assert viseme_of("SIL", "arpabet") == 0


def test_pocketsphinx_dictionary_phones_all_map():
    import os

    import pocketsphinx

    model = os.path.join(pocketsphinx.get_model_path(), "en-us")
    phones = set()
    for name in ("cmudict-en-us.dict", "en-us/noisedict"):
        with open(os.path.join(model, name), encoding="utf-8") as f:
            for line in f:
                phones.update(line.split()[1:])
    assert len(phones) >= 41
    for phone in phones:
        viseme_of(phone, "arpabet")


def test_unmapped_symbol_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'XYZ'"):
        viseme_of("XYZ", "arpabet")
    with pytest.raises(ValueError, match="'Q7'"):
        viseme_of("Q7", "espeak")
    with pytest.raises(ValueError, match="phoneset"):
        viseme_of("AA", "ipa")


def test_every_espeak_phoneme_of_english_words_maps():
    from audio2anim.data.espeak_ng import ESpeak
    from audio2anim.data.sentences import vocabulary

    words = vocabulary()
    assert len(words) >= 300
    engine = ESpeak()
    seen = set()
    for voice in ("en-us", "en", "en-gb-scotland", "en-029", "en-gb-x-rp"):
        for i in range(0, len(words), 60):
            _, _, segments = engine.synth(". ".join(words[i : i + 60]), voice)
            seen.update(s.phone for s in segments)
    assert len(seen) > 40
    for phone in seen:
        viseme_of(phone, "espeak")
    assert set(seen) <= set(known_phones("espeak"))


def test_phone_classes():
    assert [phone_class(p, "arpabet") for p in ("P", "b1", "M")] == ["bilabial"] * 3
    assert [phone_class(p, "arpabet") for p in ("UW1", "OW", "W")] == ["rounded"] * 3
    assert [phone_class(p, "arpabet") for p in ("AA", "AE", "AH0", "EH")] == ["open"] * 4
    assert phone_class("S", "arpabet") is None
    assert phone_class("m", "espeak") == "bilabial"
    assert phone_class("u:", "espeak") == "rounded"
    assert phone_class("a", "espeak") == "open"


def test_viseme_ids_sample_frame_centres():
    segs = [
        PhoneSegment(0.0, 0.1, "SIL"),
        PhoneSegment(0.1, 0.13, "P"),
        PhoneSegment(0.13, 0.3, "AA1"),
    ]
    ids = viseme_ids(segs, "arpabet", 100.0, 32)
    assert ids.dtype == np.int64
    assert list(ids[:10]) == [0] * 10
    assert list(ids[10:13]) == [1] * 3
    assert list(ids[13:30]) == [10] * 17
    assert list(ids[30:]) == [0, 0]  # past the end: sil
