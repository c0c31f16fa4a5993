#!/usr/bin/env python3
"""What forced-aligned reference labels cost the real-speech viseme accuracy.

    python bench/aligned_labels.py [--checkpoints audio2anim/checkpoints]
        [--voices espeak:en-us+m3,espeak:en-gb-x-gbcwmd+f5,espeak:en+m1,festival:kal]
        [--utterances 40] [--seed 11] [--sets tuxpaint,ktuberling,alsa] [--out out/aligned_labels.md]
        [--write-docs]

Real recordings have no true phone times: `bench/real_speech.py` scores against labels from
pocketsphinx forced alignment (`audio2anim.data.align`). Synthetic speech has both: the
synthesizer's own phone times (true) and the ones forced alignment finds for it. For each
``--voices`` voice (by default the validation and test voices of the shipped split, which no
shipped model trained on), ``--utterances`` utterances are synthesized (as ``data synth``, no
augmentation) and aligned to their text, and the table gives:

- how often the aligned labels agree with the true ones, frame by frame (100 Hz) and within
  ±20 ms of a boundary (`audio2anim.train.metrics.frame_accuracy_within`);
- the front end (``CHECKPOINTS/viseme-frontend``) scored against the true labels, against the
  aligned ones, and against the aligned ones within ±20 ms.

The real-speech sets of ``--sets`` (aligned as in `bench/real_speech.py`) get the last two
columns, so a reader sees how far the aligned-label figure of real speech sits below what the
same front end reaches against true labels. They score the aligned 16-bit audio, where
`bench/real_speech.py` scores the exported 8-bit µ-law clips (through ``eval``), so the two
benches' accuracies differ by a point or two. Prints a Markdown table and writes it to
``--out`` (and, with ``--write-docs``, into docs/performance.md, section ``aligned-labels``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perf_page import add_arguments, write_from_args  # noqa: E402
from real_speech import SETS, align_and_export, markdown_out, parse_sets  # noqa: E402

from audio2anim.resources import PACKAGE_CHECKPOINTS  # noqa: E402

HELD_OUT = "espeak:en-us+m3,espeak:en-gb-x-gbcwmd+f5,espeak:en+m1,festival:kal"
FRAME_RATE = 100
TOLERANCE = 2  # frames: ±20 ms


def frame_labels(segments, phoneset: str, n: int):
    from audio2anim.visemes import viseme_ids

    return viseme_ids([(s.start, s.end, s.phone) for s in segments], phoneset, FRAME_RATE, n)


class Scores:
    """Frame hits pooled over utterances, per figure."""

    def __init__(self) -> None:
        self.hits: dict[str, list[float]] = {}

    def add(self, name: str, pred, true, frames: int = 0) -> None:
        from audio2anim.train.metrics import frame_accuracy_within

        self.hits.setdefault(name, []).append(frame_accuracy_within(pred, true, frames) * len(true))
        self.hits.setdefault(name + "/n", []).append(len(true))

    def get(self, name: str) -> str:
        if name not in self.hits:
            return "n/a"
        return f"{sum(self.hits[name]) / max(1, sum(self.hits[name + '/n'])):.3f}"


def predict(frontend, audio):
    import torch

    from audio2anim.models.logmel import logmel

    with torch.no_grad():
        return frontend.posteriors(logmel(audio)).argmax(-1)


def synthetic_row(voice: str, n_utts: int, seed: int, frontend, aligner) -> tuple[int, Scores]:
    from audio2anim.data.synth import SynthOptions, make_job, run_job

    options = SynthOptions(voices=(voice,), seed=seed)
    scores, done = Scores(), 0
    for i in range(n_utts):
        utt, audio, true_segments = run_job(make_job(i, options))
        try:
            aligned = aligner.align(audio, 16000, utt.text)
        except ValueError as exc:  # reported, not scored: the real sets drop such clips too
            print(f"  {voice}: {exc}", file=sys.stderr)
            continue
        pred = predict(frontend, audio)
        n = len(pred)
        true = frame_labels(true_segments, utt.phoneset, n)
        ref = frame_labels(aligned, "arpabet", n)
        scores.add("agree", ref, true)
        scores.add("agree±", ref, true, TOLERANCE)
        scores.add("true", pred, true)
        scores.add("aligned", pred, ref)
        scores.add("aligned±", pred, ref, TOLERANCE)
        done += 1
    return done, scores


def real_row(name: str, frontend) -> tuple[int, Scores]:
    from audio2anim.data.corpus import Corpus

    with tempfile.TemporaryDirectory(prefix="a2a-aligned-labels-") as tmp:
        align_and_export(name, Path(tmp))
        corpus = Corpus(Path(tmp) / "corpus")
        scores = Scores()
        for utt in corpus.utterances:
            audio = corpus.audio(utt.id)
            pred = predict(frontend, audio)
            ref = frame_labels(corpus.phones(utt.id), corpus.phoneset(utt.id), len(pred))
            scores.add("aligned", pred, ref)
            scores.add("aligned±", pred, ref, TOLERANCE)
        return len(corpus.utterances), scores


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=str(PACKAGE_CHECKPOINTS))
    ap.add_argument("--voices", default=HELD_OUT, help="comma-separated data synth voice ids")
    ap.add_argument("--utterances", type=int, default=40, help="per voice")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--sets", default="tuxpaint,ktuberling,alsa",
                    help=f"real-speech sets, comma-separated, of {', '.join(SETS)}; '' for none")  # fmt: skip
    ap.add_argument("--out", default="out/aligned_labels.md")
    add_arguments(ap)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()

    config = Path(args.checkpoints) / "viseme-frontend" / "config.json"
    if not config.is_file():
        print(f"{config.parent}: no checkpoint (config.json missing)", file=sys.stderr)
        return 2
    if args.utterances < 1:
        print(f"--utterances: expected at least 1, got {args.utterances}", file=sys.stderr)
        return 2
    try:
        out = markdown_out(args.out, "out/aligned_labels.md")
        from audio2anim.data.synth import check_voices

        voices = tuple(v.strip() for v in args.voices.split(",") if v.strip())
        check_voices(voices)
        sets = parse_sets(args.sets) if args.sets.strip() else []
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    from tqdm import tqdm

    from audio2anim.data.align import Aligner
    from audio2anim.models.checkpoint import load

    torch.set_num_threads(args.threads)
    frontend = load(config.parent)[0].eval()
    aligner = Aligner()
    rows = []
    for voice in tqdm(voices, desc="synthetic voices", disable=False):
        n, s = synthetic_row(voice, args.utterances, args.seed, frontend, aligner)
        rows.append((f"{voice} (synthetic)", n, s))
    for name in sets:
        n, s = real_row(name, frontend)
        rows.append((f"{name} (real)", n, s))
    lines = [
        "## Forced-aligned labels against true ones",
        "",
        f"Front end: `{config.parent}`. Frames at 100 Hz; ± = within ±{10 * TOLERANCE} ms of a "
        "label boundary. Real sets have no true labels.",
        "",
        "| speech | utterances | aligned = true | ± | front end vs true | vs aligned | ± |",
        "|---|---|---|---|---|---|---|",
    ]
    for title, n, s in rows:
        cells = [s.get(k) for k in ("agree", "agree±", "true", "aligned", "aligned±")]
        lines.append(f"| {title} | {n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    write_from_args(args, "aligned-labels", "\n".join(lines[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
