"""Phonetically varied English sentences for the synthetic corpus, made from a seed.

No text corpus ships with Debian or the wheels we may use, so sentences are generated: a small
grammar of templates over hand-picked vocabulary that, taken together, exercises every English
phoneme (all bilabials, labiodentals, dentals, sibilants, affricates, rhotics, the full vowel
and diphthong set) in varied positions, plus a few classic pangrams and Harvard-style sentences.
The same seed always yields the same sentences. Users with their own text pass a text file
(one sentence per line) instead; see `read_text_file`.
"""

from __future__ import annotations

import random
from pathlib import Path


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


NOUNS = _words(
    "boy girl judge child shepherd thief chef mother father brother voyager farmer pilot "
    "doctor teacher sailor baker plumber lawyer tailor neighbour cousin poet painter juggler "
    "fox dog cat horse mouse whale zebra giraffe monkey beaver owl lion tiger puppy rabbit "
    "ship boat bridge church garage village valley mountain meadow harbour window ladder "
    "pillow mirror puzzle treasure measure pleasure garden orchard kitchen chimney cottage "
    "wagon rocket engine violin guitar trumpet banjo rhythm thumb breath cloth path mouth "
    "beach bush fish watch jewel cheese juice cookie soup bread butter honey pepper orange "
    "apple banana lemon melon potato tomato cherry oyster noodle yoghurt vision television "
    "book chair table clock photo shoe boot coat hat glove umbrella envelope parcel letter"
)

ADJECTIVES = _words(
    "quick lazy brown purple yellow tiny huge bright gloomy noisy quiet shiny rough smooth "
    "thick thin cheerful anxious clever foolish ugly lovely ancient modern frozen boiling "
    "soggy crunchy juicy bitter sweet sour fresh rotten heavy empty busy sleepy jolly "
    "gentle fierce famous curious royal loyal plump narrow hollow woolly velvet sturdy"
)

VERBS_PAST = _words(
    "jumped over|chased|watched|pushed|pulled|fetched|caught|bought|thought about|"
    "visited|measured|borrowed|painted|polished|washed|fixed|juggled|thanked|judged|"
    "avoided|admired|forgot|remembered|carried|dropped|found|lost|shared|hugged|"
    "followed|ignored|weighed|rescued|photographed|loved|hated|moved|shoved|choose",
    "|",
)

ADVERBS = _words(
    "quickly slowly happily sadly loudly quietly smoothly roughly eagerly calmly "
    "bravely wisely gladly yearly nightly gracefully awkwardly"
)

PLACES = _words(
    "near the bridge|in the garage|under the bed|behind the church|beside the river|"
    "at the harbour|on the roof|through the valley|across the street|inside the cottage|"
    "over the mountain|by the old mill|in the orchard|at the zoo|on Thursday morning|"
    "before the storm|after lunch|in the autumn|during the show|with great joy",
    "|",
)

NAMES = _words(
    "Peter Barbara Michael Judy Thomas Sheila George Zoe Victor Yvonne Charles Ruth "
    "Oliver Heather Jack Maureen Arthur Nancy Walter Fiona"
)

NUMBERS = _words("two three four five six seven eight nine ten eleven twelve twenty thirty")

# Fixed sentences rich in rare phones; public-domain pangrams and Harvard-style lines.
FIXED = (
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs.",
    "How vexingly quick daft zebras jump.",
    "The five boxing wizards jump quickly.",
    "She sells sea shells by the sea shore.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "Measure the usual treasure with pleasure and leisure.",
    "Why would you choose the blue shoes?",
    "Thank you, I thought the theatre was thrilling.",
    "Oh no, the oyster boy is annoying the royal choir.",
)

TEMPLATES = (
    "The {adj} {noun} {verb} the {adj2} {noun2}.",
    "{name} {verb} the {noun} {place}.",
    "The {noun} {verb} {number} {adj} {noun2}s {adv}.",
    "Did the {adj} {noun} really say that {name} {verb} the {noun2}?",
    "{name} and {name2} {verb} a {adj} {noun} {place}, and then went home.",
    "Yesterday, the {noun} {verb} the {noun2} {adv}.",
    "Why was the {adj} {noun} so {adj2} {place}?",
    "We {verb} the {adj} {noun}, but {name} {verb2} the {noun2}.",
    "{number} {adj} {noun}s {verb} {name} {place}.",
    "Oh, the {noun} is {adv} {adj}!",
)


def make_sentence(rng: random.Random) -> str:
    """One sentence: a template filled from the vocabulary (1 in 10: a fixed sentence)."""
    if rng.random() < 0.1:
        return rng.choice(FIXED)
    sentence = rng.choice(TEMPLATES).format(
        adj=rng.choice(ADJECTIVES),
        adj2=rng.choice(ADJECTIVES),
        noun=rng.choice(NOUNS),
        noun2=rng.choice(NOUNS),
        verb=rng.choice(VERBS_PAST),
        verb2=rng.choice(VERBS_PAST),
        adv=rng.choice(ADVERBS),
        place=rng.choice(PLACES),
        name=rng.choice(NAMES),
        name2=rng.choice(NAMES),
        number=rng.choice(NUMBERS),
    )
    return sentence[0].upper() + sentence[1:]


def generate(n: int, seed: int = 0) -> list[str]:
    """``n`` sentences: the fixed list first, then template sentences; deterministic in ``seed``."""
    rng = random.Random(seed)
    out: list[str] = list(FIXED[:n])
    while len(out) < n:
        out.append(make_sentence(rng))
    return out


def vocabulary() -> list[str]:
    """Every distinct word the generator can produce (lower case, sorted)."""
    words: set[str] = set()
    for group in (NOUNS, ADJECTIVES, ADVERBS, NAMES, NUMBERS, VERBS_PAST, PLACES, FIXED):
        for item in group:
            for word in item.replace(",", " ").replace(".", " ").replace("?", " ").split():
                words.add(word.strip("!'").lower())
    return sorted(w for w in words if w.isalpha())


def read_text_file(path: str | Path) -> list[str]:
    """Sentences from a UTF-8 text file, one per non-empty line."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    sentences = [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise ValueError(f"{path}: no sentences (expected one sentence per line)")
    return sentences
