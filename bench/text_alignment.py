#!/usr/bin/env python3
"""What known words gain: ``audio2anim animate`` with and without ``--text``.

    python bench/text_alignment.py [--voices espeak:en-us+m3,espeak:en-gb-x-gbcwmd+f5,espeak:en+m1,festival:kal]
        [--utterances 20] [--seed 11] [--sets alsa,ktuberling,tuxpaint[,pypi]] [--limit N]
        [--graph graphs/viseme_cnn.yaml] [--out out/text_alignment.md] [--write-docs]

Every clip is animated three ways through the Python API (`audio2anim.Animator`, the default
graph, as the command runs it): from the audio alone (the viseme front end recognizes the
visemes), and with its words (``animate(..., text=...)``: the visemes follow pocketsphinx's
forced alignment of the words, `audio2anim.animate.text`) with the aligner's boundaries as they
are (``refine=False``) and with them moved to where the recognizer hears them (the default).
All are scored against a reference:

- **synthetic voices** (``--voices``; by default the validation and test voices of the shipped
  split, which no shipped model trained on): ``--utterances`` sentences synthesized as ``data
  synth`` does, with the synthesizer's own phone times: the true reference, the honest measure;
- **real speech** (``--sets``, the loaders of `bench/real_speech.py`; ``pypi`` when its clips
  are in ``--pypi-dir``): recordings with transcripts but no phone times, so the reference is
  pocketsphinx's alignment of the transcript — the same aligner that drives ``--text``. There
  the gain is partly circular: the text path is scored against its own labels.

Figures (per row, pooled over clips): viseme accuracy over 50 Hz frames (arg-max of the
animation's viseme posteriors against the reference's viseme); closure recall and false
closures over the teacher's parameters on the reference phones (`audio2anim.train.metrics`,
as ``eval`` scores them, on the smoothed output of the graph); "text used" is the share of
clips whose words were used (the rest fell back to recognition with a warning); "wrong text
refused" is the share of clips whose words, given another clip's transcript (the next
sentence of a synthetic voice; the clip half-way round a real set's list, as neighbours such as
"Front left" and "Front right" share words), were refused (alignment failed or the words did
not fit).
Prints a Markdown table and writes it to ``--out`` (with ``--write-docs``, into
docs/performance.md, section ``text-alignment``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from aligned_labels import HELD_OUT  # noqa: E402
from perf_page import add_arguments, write_from_args  # noqa: E402
from real_speech import SETS, markdown_out, parse_sets, pypi_clips  # noqa: E402

FRAME_RATE = 50


class Tally:
    """Pooled figures of one row, for one way (recognized or text)."""

    def __init__(self) -> None:
        from audio2anim.train.metrics import LipSyncCounter

        self.hits = self.frames = 0
        self.lips = LipSyncCounter()

    def add(self, anim, reference: np.ndarray, targets: np.ndarray, segments, phoneset) -> None:
        from audio2anim import arkit
        from audio2anim.visemes import phone_class

        n = min(len(anim.visemes), len(reference))
        self.hits += int((anim.visemes[:n].argmax(axis=1) == reference[:n]).sum())
        self.frames += n
        pred = anim.values[:, [anim.names.index(x) for x in arkit.MOUTH + arkit.EYES]]
        codes = {None: 0, "bilabial": 1, "rounded": 2, "open": 3}
        self.lips.add(
            pred,
            targets,
            [s[0] for s in segments],
            [s[1] for s in segments],
            [codes[phone_class(s[2], phoneset)] for s in segments],
        )

    def cells(self) -> list[str]:
        r = self.lips.result()
        closure = "n/a" if r["segments"]["bilabial"] == 0 else f"{r['bilabial_closure_recall']:.3f}"
        return [f"{self.hits / max(1, self.frames):.3f}", closure, f"{r['false_closure_rate']:.3f}"]


WAYS = ("audio only", "text, aligner's timing", "text, refined timing (default)")


class Row:
    def __init__(self, title: str) -> None:
        self.title = title
        self.ways = {w: Tally() for w in WAYS}
        self.clips = self.used = self.wrong = self.refused = 0
        self.bilabials = 0

    def lines(self) -> list[str]:
        out = []
        for k, (way, tally) in enumerate(self.ways.items()):
            head = f"| {self.title} | {self.clips} | {self.bilabials} |" if k == 0 else "| | | |"
            tail = (
                " | |" if k == 0 else f" {self.used}/{self.clips} | {self.refused}/{self.wrong} |"
            )
            out.append(f"{head} {way} | " + " | ".join(tally.cells()) + " |" + tail)
        return out


def score_clip(row: Row, animator, audio, text: str, wrong: str | None, segments, phoneset):
    """Animate one clip both ways and add it to ``row`` (``segments``: the reference phones)."""
    from audio2anim.data import teacher
    from audio2anim.visemes import phone_class, viseme_ids

    recognized = animator.animate(audio, rate=16000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aligned = animator.animate(audio, rate=16000, text=text, refine=False)
        known = animator.animate(audio, rate=16000, text=text)
        refused = None
        if wrong is not None:
            refused = animator.animate(audio, rate=16000, text=wrong).metadata["visemes"] != "text"
    n = recognized.frames
    segs = [(s[0], s[1], s[2]) for s in segments]
    reference = viseme_ids(segs, phoneset, FRAME_RATE, n)
    seed = int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)
    t = teacher.animate(segs, phoneset, audio, 16000, FRAME_RATE, seed=seed)
    targets = np.concatenate([t["mouth"], t["eyes"]], axis=1)[:n]
    for way, anim in zip(WAYS, (recognized, aligned, known), strict=True):
        row.ways[way].add(anim, reference, targets, segs, phoneset)
    row.clips += 1
    row.used += known.metadata["visemes"] == "text"
    row.bilabials += sum(phone_class(s[2], phoneset) == "bilabial" for s in segs)
    if refused is not None:
        row.wrong += 1
        row.refused += refused


def synthetic_row(animator, voice: str, n_utts: int, seed: int) -> Row:
    from audio2anim.data.synth import SynthOptions, make_job, run_job

    options = SynthOptions(voices=(voice,), seed=seed)
    utts = [run_job(make_job(i, options)) for i in range(n_utts)]
    row = Row(f"{voice} (synthetic, true phone times)")
    for i, (utt, audio, segments) in enumerate(utts):
        wrong = utts[(i + 1) % len(utts)][0].text if len(utts) > 1 else None
        score_clip(row, animator, audio, utt.text, wrong, segments, utt.phoneset)
    return row


def real_row(animator, name: str, items, limit: int | None) -> Row:
    from audio2anim.audio import read_audio
    from audio2anim.data.align import align

    items = list(items)[:limit] if limit else list(items)
    row = Row(f"{name} (real, reference = the aligner's)")
    for i, item in enumerate(items):
        audio, _ = read_audio(item[1], 16000)
        try:
            reference = align(audio, 16000, item[2])
        except ValueError as exc:  # the real-speech bench drops such clips too
            print(f"  {name}: {exc}", file=sys.stderr)
            continue
        half = i + len(items) // 2  # half-way round: neighbours share words ("Front left")
        others = [it[2] for it in items[half:] + items[:half] if it[2] != item[2]]
        score_clip(row, animator, audio, item[2], others[0] if others else None, reference,
                   "arpabet")  # fmt: skip
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--voices", default=HELD_OUT, help="comma-separated data synth voice ids")
    ap.add_argument("--utterances", type=int, default=20, help="per voice")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--sets", help="real-speech sets, comma-separated (default: alsa, ktuberling, "
                    "tuxpaint, and pypi when --pypi-dir holds its clips); '' for none")  # fmt: skip
    ap.add_argument("--pypi-dir", type=Path, help="`audio2anim data pypi-speech` output")
    ap.add_argument("--limit", type=int, help="at most this many clips per real set")
    ap.add_argument("--graph", default=None, help="method graph (default: animate's)")
    ap.add_argument("--out", default="out/text_alignment.md")
    add_arguments(ap)
    args = ap.parse_args()

    from audio2anim.animate.api import DEFAULT_GRAPH
    from audio2anim.data.realspeech.pypi_speech import DEFAULT_OUT, MARKER

    pypi_root = args.pypi_dir or DEFAULT_OUT
    if args.sets is None:
        args.sets = "alsa,ktuberling,tuxpaint" + (",pypi" if (pypi_root / MARKER).is_file() else "")
    try:
        out = markdown_out(args.out, "out/text_alignment.md")
        from audio2anim.data.synth import check_voices

        voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
        check_voices(voices)
        sets = parse_sets(args.sets) if args.sets.strip() else []
        if args.utterances < 1:
            raise ValueError(f"--utterances: expected at least 1, got {args.utterances}")
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    os.environ.setdefault("TQDM_DISABLE", "1")
    from tqdm import tqdm

    from audio2anim import Animator

    graph = args.graph or DEFAULT_GRAPH
    animator = Animator(graph)
    rows = []
    for voice in tqdm(voices, desc="synthetic voices"):
        rows.append(synthetic_row(animator, voice, args.utterances, args.seed))
    for name in tqdm(sets, desc="real sets"):
        try:
            items = pypi_clips(pypi_root) if name == "pypi" else SETS[name][0]()
        except FileNotFoundError as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 2
        rows.append(real_row(animator, name, items, args.limit))
    lines = [
        "## Known words (`animate --text`)",
        "",
        f"Graph `{graph}`. Synthetic rows are scored "
        "against the synthesizer's phone times (true). **Real rows are scored against "
        "pocketsphinx's forced alignment of the transcript, the aligner `--text` itself uses: "
        "their gain is partly circular** (the text path is compared with its own labels); the "
        "synthetic rows are the honest measure. Viseme accuracy over 50 Hz frames; closure "
        "recall over P/B/M segments and false closures over open frames, on the teacher's "
        "parameters for the reference phones (`audio2anim/train/metrics.py`).",
        "",
        "| speech | clips | P/B/M | visemes from | viseme acc. | closure recall "
        "| false closures | text used | wrong text refused |",
        "|---|---|---|---|---|---|---|---|---|",
        *[line for r in rows for line in r.lines()],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    write_from_args(args, "text-alignment", "\n".join(lines[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
