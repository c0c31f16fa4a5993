"""espeak-ng as a grapheme-to-phoneme fallback: words → ARPAbet through espeak's mnemonics.

Forced alignment needs a pronunciation for every word; CMUdict (shipped with pocketsphinx)
lacks names, rare words and numbers. espeak-ng pronounces any English text, so a missing word
is spoken by espeak-ng (its phoneme events give the phonemes it used) and each mnemonic is
mapped to ARPAbet with ``ESPEAK_TO_ARPABET``. The same table lets tests compare espeak's
phone timings with ARPAbet alignments. Rhotic diphthongs become two phones (``A@`` → AA R).
"""

from __future__ import annotations

ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # vowels
    "@": ("AH",), "@-": ("AH",), "@2": ("AH",), "@5": ("AH",), "@#": ("AH",), "a#": ("AH",),
    "V": ("AH",), "A#": ("AA",),
    "a": ("AE",), "a2": ("AE",), "a#2": ("AE",), "a/": ("AE",), "aa": ("AE",),
    "A:": ("AA",), "A~": ("AA",), "0": ("AA",), "0#": ("AA",), "02": ("AA",),
    "A@": ("AA", "R"),
    "aI": ("AY",), "aI2": ("AY",), "aI3": ("AY",), "aI@": ("AY", "ER"),
    "aU": ("AW",), "aU@": ("AW", "ER"),
    "e": ("EH",), "e:": ("EH",), "e#": ("EH",), "E": ("EH",), "E2": ("EH",), "E#": ("EH",),
    "e@": ("EH", "R"), "eI": ("EY",),
    "i": ("IY",), "i:": ("IY",), "I": ("IH",), "I#": ("IH",), "I2": ("IH",), "I2#": ("IH",),
    "i@": ("IH", "R"), "i@3": ("IY", "ER"),
    "o": ("AO",), "o:": ("AO",), "O": ("AO",), "O:": ("AO",), "O2": ("AO",), "O~": ("AO",),
    "o@": ("AO", "R"), "O@": ("AO", "R"), "oU": ("OW",), "oU#": ("OW",), "OI": ("OY",),
    "u": ("UW",), "u:": ("UW",), "U": ("UH",), "U@": ("UH", "R"),
    "3": ("ER",), "3:": ("ER",), "IR": ("ER",), "VR": ("ER",),
    # syllabic consonants
    "@L": ("AH", "L"), "l-": ("AH", "L"), "n-": ("AH", "N"), "m-": ("AH", "M"), "N-": ("NG",),
    # consonants
    "p": ("P",), "b": ("B",), "m": ("M",), "B": ("B",),
    "f": ("F",), "v": ("V",), "v#": ("V",), "T": ("TH",), "D": ("DH",),
    "t": ("T",), "t#": ("T",), "t2": ("T",), "t[": ("T",), "?": ("T",), "*": ("D",),
    "d": ("D",), "d[": ("D",), "d#": ("D",),
    "k": ("K",), "g": ("G",), "q": ("K",), "c": ("K",), "J": ("G",), "x": ("K",), "X": ("K",),
    "Q": ("G",), "Q^": ("G",), 'Q"': ("G",), "C": ("HH",), "#X1": ("HH",), "h": ("HH",),
    "tS": ("CH",), "tS;": ("CH",), "dZ": ("JH",), "dZ;": ("JH",), "J^": ("JH",),
    "S": ("SH",), "S;": ("SH",), "Z": ("ZH",), "Z;": ("ZH",),
    "s": ("S",), "s.": ("S",), "s;": ("S",), "z": ("Z",), "z.": ("Z",), "z;": ("Z",),
    "z#": ("Z",), "z/2": ("Z",),
    "n": ("N",), "n.": ("N",), "n^": ("N",), "N": ("NG",),
    "l": ("L",), "l/": ("L",), "l/2": ("L",), "l/3": ("L",), "l^": ("L",), "l.": ("L",),
    "L/": ("L",), "L": ("L",), "l#": ("L",),
    "r": ("R",), "r-": ("R",), "r/": ("R",), 'r"': ("R",), "r.": ("R",), "R": ("R",),
    "R2": ("R",), "R3": ("R",), "**": ("R",),
    "j": ("Y",), "w": ("W",), "w#": ("W",),
    ";": (),  # palatalization mark: no phone of its own in ARPAbet
}  # fmt: skip


def to_arpabet(espeak_phone: str) -> tuple[str, ...]:
    """ARPAbet phones for one espeak mnemonic (``()`` for pauses and modifiers)."""
    if espeak_phone == "sil" or espeak_phone.startswith("_") or espeak_phone == "||":
        return ()
    try:
        return ESPEAK_TO_ARPABET[espeak_phone]
    except KeyError:
        raise ValueError(f"espeak phone {espeak_phone!r} has no ARPAbet mapping") from None


def pronounce(word: str, voice: str = "en-us") -> list[str]:
    """ARPAbet pronunciation of ``word`` as espeak-ng speaks it (e.g. "xylo" → Z AY L OW)."""
    from .espeak_ng import ESpeak

    _, _, segments = ESpeak().synth(word, voice)
    phones = [p for s in segments for p in to_arpabet(s.phone)]
    if not phones:
        raise ValueError(f"espeak-ng gave no phonemes for {word!r}")
    return phones
