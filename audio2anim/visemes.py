"""Phones → the 15 Oculus/Meta visemes, from ARPAbet and from espeak-ng's English mnemonics.

Viseme IDs are indexes into `VISEMES` (Oculus order) and never change:

    0 sil  1 PP  2 FF  3 TH  4 DD  5 kk  6 CH  7 SS  8 nn  9 RR  10 aa  11 E  12 ih  13 oh  14 ou

Phonesets:

- ``"arpabet"``: every CMUdict / pocketsphinx phone plus the extended TIMIT/Festival symbols
  (AX, AXR, IX, UX, DX, EL, EM, EN, NX, Q, WH, H), in any case, stress digits ignored
  (``AH0`` = ``AH``); silence and noise symbols (``SIL``, ``SP``, ``pau``, ``+NSN+``, …) are sil.
- ``"espeak"``: the phoneme mnemonics espeak-ng reports in its phoneme events for its English
  voices: the ``base1`` table every language inherits, the ``en`` table and its dialect
  overrides (``en-us``, ``en-sc``, ``en-rp``, ``en-wm``, ``en-wi``, ``en-n``), read from
  ``espeak-ng-data/phontab`` of espeak-ng 1.51. Pauses (``_``, ``_:``, ``_!``, …) are sil.

Choices where the Oculus reference is silent: schwa and AH go to aa (CMUdict writes both AH);
ER/AXR and r-coloured vowels to RR; L, NG and syllabic nasals/laterals to nn; HH and the glottal
stop to kk (no lip shape of their own); Y to ih; W to ou. An unknown symbol raises
``ValueError`` naming it: a silent default would corrupt labels unnoticed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VISEMES: tuple[str, ...] = (
    "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou",
)  # fmt: skip
N_VISEMES = len(VISEMES)
#: the `Features` kind of viseme probabilities read as features (``feature.viseme_probs``)
VISEME_PROBS = "viseme-probs"
VISEME_ID: dict[str, int] = {name: i for i, name in enumerate(VISEMES)}

_ARPABET: dict[str, str] = {
    # vowels
    "AA": "aa", "AE": "aa", "AH": "aa", "AX": "aa", "AW": "aa", "AY": "aa",
    "AO": "oh", "OW": "oh", "OY": "oh",
    "EH": "E", "EY": "E",
    "IH": "ih", "IX": "ih", "IY": "ih",
    "UH": "ou", "UW": "ou", "UX": "ou",
    "ER": "RR", "AXR": "RR",
    # consonants
    "P": "PP", "B": "PP", "M": "PP", "EM": "PP",
    "F": "FF", "V": "FF",
    "TH": "TH", "DH": "TH",
    "T": "DD", "D": "DD", "DX": "DD",
    "K": "kk", "G": "kk", "HH": "kk", "H": "kk", "Q": "kk",
    "CH": "CH", "JH": "CH", "SH": "CH", "ZH": "CH",
    "S": "SS", "Z": "SS",
    "N": "nn", "EN": "nn", "NX": "nn", "NG": "nn", "L": "nn", "EL": "nn",
    "R": "RR",
    "W": "ou", "WH": "ou",
    "Y": "ih",
    # silence and pocketsphinx filler/noise units
    "SIL": "sil", "SP": "sil", "PAU": "sil", "H#": "sil", "<SIL>": "sil", "<S>": "sil",
    "</S>": "sil", "+NSN+": "sil", "+SPN+": "sil", "+BREATH+": "sil", "+COUGH+": "sil",
    "+NOISE+": "sil", "+SMACK+": "sil", "+UH+": "sil", "+UM+": "sil",
}  # fmt: skip

_ESPEAK: dict[str, str] = {
    "sil": "sil",
    # pauses of every length
    "_": "sil", "_:": "sil", "_!": "sil", "_::": "sil", "_^_": "sil", "_X1": "sil",
    "_|": "sil", "_;_": "sil", "||": "sil",
    # vowels: open
    "a": "aa", "a#": "aa", "a2": "aa", "a#2": "aa", "a/": "aa", "aa": "aa",
    "A:": "aa", "A@": "aa", "A#": "aa", "A~": "aa", "0": "aa", "0#": "aa", "02": "aa",
    "V": "aa", "aI": "aa", "aI2": "aa", "aI3": "aa", "aI@": "aa", "aU": "aa", "aU@": "aa",
    "@": "aa", "@-": "aa", "@2": "aa", "@5": "aa", "@#": "aa",
    # vowels: mid / front
    "e": "E", "e:": "E", "e#": "E", "e@": "E", "eI": "E", "E": "E", "E2": "E", "E#": "E",
    "i": "ih", "i:": "ih", "i@": "ih", "i@3": "ih", "I": "ih", "I#": "ih", "I2": "ih",
    "I2#": "ih",
    # vowels: rounded back
    "o": "oh", "o:": "oh", "o@": "oh", "oU": "oh", "oU#": "oh", "O": "oh", "O:": "oh",
    "O2": "oh", "O@": "oh", "O~": "oh", "OI": "oh",
    "u": "ou", "u:": "ou", "U": "ou", "U@": "ou",
    # r-coloured vowels
    "3": "RR", "3:": "RR", "IR": "RR", "VR": "RR",
    # bilabials, labiodentals, dentals
    "p": "PP", "b": "PP", "m": "PP", "m-": "PP", "B": "PP",
    "f": "FF", "v": "FF", "v#": "FF",
    "T": "TH", "D": "TH",
    # alveolar stops and flaps
    "t": "DD", "t#": "DD", "t2": "DD", "t[": "DD", "d": "DD", "d[": "DD", "d#": "DD", "*": "DD",
    # velar, palatal, uvular, glottal
    "k": "kk", "g": "kk", "q": "kk", "c": "kk", "J": "kk", "x": "kk", "X": "kk", "C": "kk",
    "Q": "kk", "Q^": "kk", 'Q"': "kk", "h": "kk", "#X1": "kk", "?": "kk",
    # postalveolars and affricates
    "tS": "CH", "dZ": "CH", "tS;": "CH", "dZ;": "CH", "S": "CH", "Z": "CH", "S;": "CH",
    "Z;": "CH", "J^": "CH",
    # sibilants
    "s": "SS", "z": "SS", "s.": "SS", "z.": "SS", "s;": "SS", "z;": "SS", "z#": "SS",
    "z/2": "SS",
    # nasals and laterals
    "n": "nn", "n-": "nn", "n.": "nn", "n^": "nn", "N": "nn", "N-": "nn",
    "l": "nn", "l-": "nn", "l/": "nn", "l/2": "nn", "l/3": "nn", "l^": "nn", "l.": "nn",
    "L/": "nn", "L": "nn", "l#": "nn", "@L": "nn",
    # rhotics
    "r": "RR", "r-": "RR", "r/": "RR", 'r"': "RR", "r.": "RR", "R": "RR", "R2": "RR",
    "R3": "RR", "**": "RR",
    # glides and the palatalization mark (reported as its own short phoneme)
    "j": "ih", ";": "ih", "w": "ou", "w#": "ou",
}  # fmt: skip

# The three articulatory classes the teacher's checks (and tests) need.
_CLASS_ARPABET = {
    "bilabial": {"P", "B", "M", "EM"},
    "rounded": {"UW", "OW", "W", "WH", "UX"},
    "open": {"AA", "AE", "AH", "AO", "AW", "AY", "EH"},
}
_CLASS_ESPEAK = {
    "bilabial": {"p", "b", "m", "m-"},
    "rounded": {"u:", "u", "oU", "oU#", "o", "o:", "w", "w#"},
    "open": {
        "A:", "aa", "A@", "A#", "A~", "0", "0#", "02",                 # AA
        "a", "a#", "a2", "a#2", "a/",                                  # AE
        "V",                                                           # AH
        "O", "O:", "O2", "O@", "o@",                                   # AO
        "aU", "aU@",                                                   # AW
        "aI", "aI2", "aI3", "aI@",                                     # AY
        "E", "E2", "E#", "e", "e@",                                    # EH
    },
}  # fmt: skip
PHONESETS = ("arpabet", "espeak")


def normalize_phone(phone: str, phoneset: str) -> str:
    """The table key for ``phone``: ARPAbet upper-cased without stress digits; espeak as is."""
    if phoneset == "arpabet":
        return phone.upper().rstrip("012")
    if phoneset == "espeak":
        return phone
    raise ValueError(f"unknown phoneset {phoneset!r} (expected one of {PHONESETS})")


def viseme_of(phone: str, phoneset: str) -> int:
    """Viseme ID of one phone; raises ``ValueError`` naming an unmapped symbol."""
    table = _ARPABET if phoneset == "arpabet" else _ESPEAK
    key = normalize_phone(phone, phoneset)
    try:
        return VISEME_ID[table[key]]
    except KeyError:
        raise ValueError(f"phone {phone!r} has no viseme in the {phoneset} table") from None


def phone_class(phone: str, phoneset: str) -> str | None:
    """ "bilabial" (P/B/M), "rounded" (UW/OW/W), "open" (AA/AE/AH/AO/AW/AY/EH) or None."""
    key = normalize_phone(phone, phoneset)
    classes = _CLASS_ARPABET if phoneset == "arpabet" else _CLASS_ESPEAK
    for name, members in classes.items():
        if key in members:
            return name
    return None


def known_phones(phoneset: str) -> tuple[str, ...]:
    """Every symbol the table of ``phoneset`` maps."""
    normalize_phone("sil", phoneset)  # validates the phoneset name
    return tuple(_ARPABET if phoneset == "arpabet" else _ESPEAK)


def viseme_ids(
    segments: Sequence[tuple[float, float, str]], phoneset: str, frame_rate: float, n_frames: int
) -> np.ndarray:
    """Per-frame viseme IDs [n_frames] int64: frame i takes the phone at (i + 0.5) / frame_rate.

    Times past the last segment are sil. Raises ``ValueError`` on an unmapped phone.
    """
    out = np.zeros(n_frames, dtype=np.int64)
    if not segments or n_frames <= 0:
        return out
    ends = np.array([s[1] for s in segments], dtype=np.float64)
    ids = np.array([viseme_of(s[2], phoneset) for s in segments], dtype=np.int64)
    centers = (np.arange(n_frames) + 0.5) / frame_rate
    idx = np.searchsorted(ends, centers, side="right")
    inside = idx < len(segments)
    out[inside] = ids[idx[inside]]
    return out
