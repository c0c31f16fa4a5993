#!/usr/bin/env python3
"""The shipped checkpoints on real recorded speech: the alsa-utils clips, forced-aligned.

    python bench/real_speech.py [--checkpoints checkpoints] [--out out/real_speech.md]

The only real recorded speech a Debian machine has is alsa-utils' speaker-test clips
(``/usr/share/sounds/alsa/Front_Center.wav`` …: one woman saying "Front center", "Rear left",
…; 48 kHz; ``Noise.wav`` is left out). The bench links the eight clips into a temporary folder
with a transcript file, aligns them with pocketsphinx (`audio2anim.data.align.align_folder`,
as ``audio2anim data align``), exports them (`audio2anim.train.data.export_data`, as
``audio2anim train export-data``: the labels are the aligned phones, the parameter targets the
procedural teacher's on those phones), prints the alignment of every clip so a reader can check
it, and evaluates every checkpoint of ``--checkpoints`` on all eight utterances
(`audio2anim.train.evaluate.run_eval`, as ``audio2anim eval --split all``; each report is kept
in ``OUT``'s folder, ``real_speech/<model>/``). Prints one Markdown table and writes it to
``--out``. Predictor rows are end to end from the audio; viseme predictors also get a row on
the aligned (true) visemes. A lip-sync figure with no segment of its class reads
"n/a (0 segments)": these words have no P/B/M and no UW/OW/W.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio2anim.train.evaluate import fmt  # noqa: E402 (after the path)

SOUNDS = Path("/usr/share/sounds/alsa")
CLIPS = ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right",
         "Side_Left", "Side_Right")  # fmt: skip
VOICE = "alsa-utils"


def lip(row: dict, key: str, seg: str) -> str:
    """A lip-sync figure with its segment count, or 'n/a (0 segments)'."""
    n = row["segments"][seg]
    return "n/a (0 segments)" if n == 0 else f"{fmt(row[key])} ({n})"


def alignment_line(segments) -> str:
    """'0.00–0.47 F R AH N T · 0.79–1.43 S EH N T ER': phones between pauses, with times."""
    groups, cur = [], []
    for s in segments:
        if s.phone == "sil":
            if cur:
                groups.append(cur)
            cur = []
        else:
            cur.append(s)
    if cur:
        groups.append(cur)
    return " · ".join(
        f"{g[0].start:.2f}–{g[-1].end:.2f} " + " ".join(s.phone for s in g) for g in groups
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default="checkpoints")
    ap.add_argument("--out", default="out/real_speech.md")
    ap.add_argument("--sounds", default=str(SOUNDS), help="folder of the alsa-utils clips")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args()

    sounds = Path(args.sounds)
    missing = [c for c in CLIPS if not (sounds / f"{c}.wav").is_file()]
    if missing:
        print(f"{sounds}: {len(missing)} of the {len(CLIPS)} alsa-utils speech clips are missing "
              f"({missing[0]}.wav …): install alsa-utils (setup.sh does)", file=sys.stderr)  # fmt: skip
        return 2
    ckdir = Path(args.checkpoints)

    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars of the export and weight loading
    import numpy as np
    import soundfile
    import torch

    from audio2anim.data.align import align_folder
    from audio2anim.data.corpus import Corpus
    from audio2anim.models.checkpoint import MODELS
    from audio2anim.train.data import export_data
    from audio2anim.train.evaluate import run_eval

    found = {p.parent.name for p in ckdir.glob("*/config.json")}  # MODELS order, then others
    names = [m for m in MODELS if m in found] + sorted(found - set(MODELS))
    if not names:
        print(f"{ckdir}: no checkpoint (a folder with config.json)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    reports = out.with_suffix("")  # out/real_speech/<model>/report.md

    with tempfile.TemporaryDirectory(prefix="real_speech-") as tmp:
        tmp = Path(tmp)
        (tmp / "audio").mkdir()
        for c in CLIPS:
            (tmp / "audio" / f"{c}.wav").symlink_to((sounds / f"{c}.wav").resolve())
        (tmp / "transcripts.tsv").write_text(
            "".join(f"{c}\t{c.replace('_', ' ').capitalize()}\n" for c in CLIPS)
        )
        result = align_folder(tmp / "audio", tmp / "transcripts.tsv", tmp / "corpus",
                              voice=VOICE, progress=False)  # fmt: skip
        if result["failed"]:
            print(f"alignment failed: {'; '.join(result['failed'])}", file=sys.stderr)
            return 1
        corpus = Corpus(tmp / "corpus")
        rate = soundfile.info(str(sounds / f"{CLIPS[0]}.wav")).samplerate
        print(f"pocketsphinx alignment of the {len(CLIPS)} clips ({sounds}, {rate / 1000:g} kHz → 16 kHz); "
              "phones between pauses, seconds:\n")  # fmt: skip
        for u in sorted(corpus.utterances, key=lambda u: CLIPS.index(u.id)):
            print(
                f"  {u.id:<13} {u.duration:4.2f} s  {u.text!r:<15} {alignment_line(corpus.phones(u.id))}"
            )
        print()
        export_data(tmp / "corpus", tmp / "export", max_mb=None)
        seconds = sum(u.duration for u in corpus.utterances)

        lines = [
            f"Real recorded speech: the {len(CLIPS)} alsa-utils clips (`{sounds}`), one speaker, {seconds:.1f} s, "
            "aligned by pocketsphinx (labels approximate); targets from the teacher on the "
            f"aligned phones. Checkpoints: `{ckdir}`.",
            "",
            "| model | viseme acc. | PER | MAE mouth | closure (n segments) | rounding (n) | openness (n) |",
            "|---|---|---|---|---|---|---|",
        ]
        frames = None
        for name in names:
            r, _ = run_eval(ckdir / name, tmp / "export", out=reports / name, split="all")
            if "viseme_frame_accuracy" in r:
                frames = r["frames"]
                lines.append(
                    f"| {name} | {fmt(r['viseme_frame_accuracy'])} | n/a | n/a | n/a | n/a | n/a |"
                )
            elif "phone_error_rate" in r:
                lines.append(
                    f"| {name} | n/a | {fmt(r['phone_error_rate'])} | n/a | n/a | n/a | n/a |"
                )
            for mode, label in (("from_audio", name), ("oracle", f"{name} (true visemes in)")):
                if mode not in r:
                    continue
                row = r[mode]
                lines.append(
                    f"| {label} | | | {fmt(row['mae']['mouth'])} "
                    f"| {lip(row, 'bilabial_closure_recall', 'bilabial')} "
                    f"| {lip(row, 'rounding_recall', 'rounded')} "
                    f"| {lip(row, 'open_vowel_openness', 'open')} |"
                )
        # the second front end the issue asks to compare against: pocketsphinx's phone loop, an
        # acoustic model of real speech (the same model aligned the labels: a bias in its favour)
        from audio2anim.operators.feature_visemes import PocketsphinxVisemes
        from audio2anim.train.data import load_data
        from audio2anim.train.metrics import frame_accuracy

        hits = total = 0
        for u in load_data(tmp / "export").utterances:
            ps = PocketsphinxVisemes(stable_ms=120, restart_s=20)
            ids = np.concatenate([ps.push(u.audio), ps.flush()]).argmax(-1)
            n = min(len(ids), len(u.vis100))
            hits += frame_accuracy(ids[:n], u.vis100[:n]) * n
            total += n
        lines.append(
            f"| pocketsphinx phone loop (`feature.visemes` backend) | {fmt(hits / max(1, total))} "
            "| n/a | n/a | n/a | n/a | n/a |"
        )
        lines += [
            "",
            "Predictor rows are end to end from audio (viseme-* through `viseme-frontend`, "
            "w2v-* through `wav2vec2`) unless marked. "
            + (f"Viseme accuracy over {frames} frames (100 Hz). " if frames else "")
            + "Definitions: `audio2anim/train/metrics.py`; per-model reports: "
            f"`{reports}/<model>/report.md`.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    out.write_text(text)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
