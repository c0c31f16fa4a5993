"""Asterisk's English voice prompts as a corpus of real recorded speech (``data asterisk``).

Debian's ``asterisk-core-sounds-en-g722`` holds 568 studio recordings of one speaker (Allison
Smith, CC-BY-SA 3.0) as 16 kHz G.722, and ``asterisk-core-sounds-en`` their transcripts
(``core-sounds-en.txt.gz``: ``name: text`` lines). About 25 minutes of real speech with known
words: enough to align with pocketsphinx (`audio2anim.data.align`) and to train or evaluate on.

`prompts` pairs each recording with its transcript, made speakable: ``[@]``/``<beep>``/
``(10 seconds of silence)`` notes are dropped, ``*`` and ``#`` read as the caller hears them
("star", "pound"), and prompts with no words left (tones, silence) are skipped. `split_prompts`
gives a seeded, named train/test split of them, so a held-out part never trains a model.
"""

from __future__ import annotations

import gzip
import random
import re
from pathlib import Path

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
VOICE = "asterisk:allison"
PACKAGES = "asterisk-core-sounds-en-g722 asterisk-core-sounds-en"
TEST_FRACTION = 0.25  # `data asterisk --part test` and bench/real_speech's asterisk-test set

_NOTE = re.compile(r"\[[^\]]*\]|<[^>]*>|\([^)]*\)")
_SPOKEN = {"*": " star ", "#": " pound ", "&": " and ", "%": " percent "}


def speakable(text: str) -> str:
    """The words a prompt's transcript says (notes in brackets dropped, symbols spelled out)."""
    text = _NOTE.sub(" ", text)
    for symbol, word in _SPOKEN.items():
        text = text.replace(symbol, word)
    return " ".join(text.split())


def read_transcripts(path: Path = TRANSCRIPTS) -> dict[str, str]:
    """{prompt name ("vm-goodbye", "digits/1"): transcript} from core-sounds-en.txt(.gz)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no Asterisk prompt transcripts (install {PACKAGES})")
    opener = gzip.open if path.suffix == ".gz" else open
    out = {}
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            out[name.strip()] = text.strip()
    return out


def prompts(sounds: Path = SOUNDS, transcripts: Path = TRANSCRIPTS) -> list[tuple[str, Path, str]]:
    """(name, audio path, speakable text) of every recording that says words, sorted by name."""
    sounds = Path(sounds)
    files = {p.relative_to(sounds).with_suffix("").as_posix(): p for p in sounds.rglob("*.g722")}
    if not files:
        raise FileNotFoundError(f"{sounds}: no .g722 prompts (install {PACKAGES})")
    texts = read_transcripts(transcripts)
    out = []
    for name in sorted(files):
        words = speakable(texts.get(name, ""))
        if re.search(r"[A-Za-z0-9]", words):
            out.append((name, files[name], words))
    return out


def split_prompts(
    items: list, test_fraction: float = TEST_FRACTION, seed: int = 0
) -> dict[str, list]:
    """{"train": …, "test": …}: a seeded split by prompt (the same for the same prompt names)."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test fraction must be within [0, 1], got {test_fraction}")
    order = sorted(items, key=lambda item: item[0])
    random.Random(seed).shuffle(order)
    cut = round(test_fraction * len(order))
    return {"test": sorted(order[:cut]), "train": sorted(order[cut:])}
