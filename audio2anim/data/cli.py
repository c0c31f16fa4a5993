"""``audio2anim data …``: corpus building, labels, the teacher and the dataset steps.

Subcommands: synth, align, asterisk, pypi-speech, kokoro-voices, import-livelink, teach,
make-viseme-ids, append, softmax, normalize, split, info. See docs/data.md. Run with
``audio2anim data STEP …`` or ``python -m audio2anim data STEP …``.
"""

from __future__ import annotations

import sys


def _fail(message: str) -> int:
    print(f"audio2anim data: error: {message}", file=sys.stderr)
    return 2


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _one_line_errors(fn):
    """Bad input → one clear line on stderr and exit code 2, not a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(args) -> int:
        from audio2anim.resources import MissingDependency

        try:
            return int(fn(args) or 0)
        except (ValueError, FileNotFoundError, KeyError, RuntimeError, MissingDependency) as exc:
            return _fail(str(exc).strip("'\""))

    return wrapper


def _ids_from_split(path: str | None, part: str | None) -> list[str] | None:
    if not part:
        return None
    from .dataset import read_split

    if not path:
        raise ValueError("--part needs --split FILE (or the dataset's split.json)")
    split = read_split(path)
    if part not in ("train", "test"):
        raise ValueError(f"--part must be train or test, got {part!r}")
    return split[part]


# ---------------------------------------------------------------------------- synth


def cmd_synth(args) -> int:
    import time

    from . import augment as aug
    from .sentences import read_text_file
    from .synth import DEFAULT_VOICES, SynthOptions, build, check_voices
    from .tts import expand_voices

    voices = DEFAULT_VOICES if args.voices in ("all", "") else expand_voices(_csv(args.voices))
    augment = aug.NAMES if args.augment == "all" else _csv(args.augment)
    sentences = tuple(read_text_file(args.text)) if args.text else ()
    options = SynthOptions(
        hours=args.hours,
        voices=voices,
        seed=args.seed,
        sentences=sentences,
        augment=augment,
        augment_probability=args.augment_prob,
        workers=args.workers,
    )
    check_voices(voices)
    start = time.monotonic()
    result = build(args.out, options, progress=not args.quiet)
    wall = time.monotonic() - start
    print(
        f"{args.out}: {result['utterances']} utterances, {result['hours']:.3f} h, "
        f"{len(result['voices'])} voices; added {result['added']} "
        f"({result['failed']} failed) in {wall:.1f} s with {args.workers} workers"
    )
    return 0


# ---------------------------------------------------------------------------- dataset steps


def cmd_teach(args) -> int:
    from .dataset import teach

    counts = teach(args.corpus, args.out, args.frame_rate, args.seed, args.workers, not args.quiet)
    print(f"{args.out}: mouth/eyes at {args.frame_rate} Hz for {counts['teacher']} utterances "
          f"(teacher) and {counts['captured']} (captured)")  # fmt: skip
    return 0


def cmd_make_viseme_ids(args) -> int:
    from .dataset import make_viseme_ids

    n = make_viseme_ids(args.corpus, args.out, args.frame_rate, not args.quiet)
    print(f"{args.out}: viseme_ids at {args.frame_rate} Hz for {n} utterances")
    return 0


def cmd_append(args) -> int:
    import io
    from pathlib import Path

    import numpy as np

    from .corpus import atomic_write_bytes
    from .dataset import Dataset, append

    ds = Dataset(args.dataset)
    split_path = args.split or (Path(args.dataset) / "split.json")
    result = append(ds, args.array, _ids_from_split(str(split_path), args.part))
    buf = io.BytesIO()
    np.savez(buf, **result)
    atomic_write_bytes(Path(args.out), buf.getvalue())
    print(
        f"{args.out}: {args.array} {tuple(result['data'].shape)} from {len(result['ids'])} utterances"
    )
    return 0


def cmd_softmax(args) -> int:
    from .dataset import Dataset, softmax_array

    out = args.out_array or f"{args.array}_softmax"
    n = softmax_array(Dataset(args.dataset), args.array, out, args.temperature)
    print(f"{args.dataset}: {out} = softmax({args.array}) for {n} utterances")
    return 0


def cmd_normalize(args) -> int:
    from pathlib import Path

    from .dataset import Dataset, normalize

    split_path = args.split or (Path(args.dataset) / "split.json")
    fit_ids = _ids_from_split(str(split_path), args.part)
    ds = Dataset(args.dataset)
    normalize(ds, args.array, args.method, args.out_array, fit_ids)
    print(f"{args.dataset}: {args.out_array or args.array + '_norm'} ({args.method}); "
          f"statistics in {ds.path / 'stats' / (args.array + '.json')}")  # fmt: skip
    return 0


def cmd_split(args) -> int:
    from .dataset import Dataset, write_split

    result = write_split(Dataset(args.dataset), args.by, args.test, args.seed)
    print(f"{args.dataset}/split.json: {len(result['train'])} train, {len(result['test'])} test "
          f"utterances (by {args.by}; test voices: {', '.join(result['test_voices'])})")  # fmt: skip
    return 0


def cmd_info(args) -> int:
    import json

    from .dataset import info

    summary = info(args.path, args.frame_rate)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"{args.path}: {summary['kind']}, {summary['utterances']} utterances, "
          f"{summary['hours']:.3f} h, {len(summary['voices'])} voices")  # fmt: skip
    for voice, hours in summary["hours_per_voice"].items():
        print(f"  {voice:32s} {hours * 60:7.1f} min")
    if summary["arrays"]:
        print(f"  arrays: {', '.join(summary['arrays'])}")
    total = sum(summary["viseme_frames"].values())
    if total:
        print("  viseme frames:")
        for name, count in summary["viseme_frames"].items():
            print(f"    {name:4s} {count:9d} {100 * count / total:5.1f} %")
    return 0


# ---------------------------------------------------------------------------- captured takes


def _audio_beside(csv_path):
    for ext in (".wav", ".flac", ".mov", ".mp4", ".m4a"):
        candidate = csv_path.with_suffix(ext)
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"{csv_path}: no audio beside it (.wav/.flac/.mov/.mp4); pass --audio")


def cmd_import_livelink(args) -> int:
    from pathlib import Path

    from .livelink import import_take

    csvs = [Path(p) for p in args.csv]
    if args.audio and len(csvs) > 1:
        raise ValueError(
            "--audio names one file; with several takes put each take's audio beside its CSV"
        )
    transcript = args.transcript
    if transcript and transcript.startswith("@"):
        transcript = Path(transcript[1:]).read_text(encoding="utf-8").strip()
    for csv_path in csvs:
        audio = Path(args.audio) if args.audio else _audio_beside(csv_path)
        info = import_take(
            csv_path, audio, args.out, uid=args.id if len(csvs) == 1 else None, voice=args.voice,
            transcript=transcript, frame_rate=args.frame_rate, fps=args.fps, offset=args.offset,
        )  # fmt: skip
        print(f"{args.out}: {info['id']}: {info['duration']:.2f} s, {info['frames']} frames at "
              f"{args.frame_rate} Hz from a {info['take_fps']:g} fps take ({info['columns']} columns)")  # fmt: skip
    return 0


# ---------------------------------------------------------------------------- recorded speech


def cmd_align(args) -> int:
    from .align import align_folder

    result = align_folder(args.audio, args.transcripts, args.out, voice=args.voice,
                          g2p=not args.no_g2p, workers=args.workers, progress=not args.quiet,
                          transcribe_missing=args.transcribe_missing,
                          whisper_model=args.whisper)  # fmt: skip
    transcribing = args.transcripts is None or args.transcribe_missing
    recognized = f" ({result['recognized']} to Whisper's transcripts)" if transcribing else ""
    print(f"{args.out}: aligned {result['aligned']} utterances{recognized}; "
          f"{len(result['failed'])} failed, "
          f"{len(result['untranscribed'])} audio files without a transcript")  # fmt: skip
    if result["recognized"]:
        print(f"  recognized transcripts are marked text_source \"recognized\" in "
              f"{args.out}/manifest.json: check them")  # fmt: skip
    if result["untranscribed"]:
        print(f"  left out for want of a transcript: {', '.join(result['untranscribed'][:5])}"
              f"{' …' if len(result['untranscribed']) > 5 else ''} (--transcribe-missing "
              f"transcribes them)", file=sys.stderr)  # fmt: skip
    return _failures(result)


def cmd_asterisk(args) -> int:
    from .align import align_files
    from .realspeech.asterisk import VOICE, prompts, split_prompts

    items = prompts(args.sounds, args.transcripts)
    if args.part != "all":
        items = split_prompts(items, args.test_fraction, args.seed)[args.part]
    # stems are flat file names: "digits/1" → "digits_1"
    result = align_files([(n.replace("/", "_"), p, t) for n, p, t in items], args.out,
                         voice=VOICE, workers=args.workers, progress=not args.quiet)  # fmt: skip
    print(f"{args.out}: aligned {result['aligned']} of {len(items)} Asterisk prompts "
          f"({args.part}); {len(result['failed'])} failed and left out")  # fmt: skip
    return _failures(result)


def _failures(result: dict) -> int:
    """Names each file an alignment run left out on stderr → the exit status (1 if any)."""
    for message in result["failed"]:
        print(f"  failed: {message}", file=sys.stderr)
    return 1 if result["failed"] else 0


def cmd_kokoro_voices(args) -> int:
    from .tts.kokoro import VOICES, fetch_voices

    where = fetch_voices(args.dest, progress=not args.quiet)
    print(f"{where}: {len(VOICES)} Kokoro voices (kokoro:{VOICES[0]} … kokoro:{VOICES[-1]})")
    return 0


def cmd_pypi_speech(args) -> int:
    from pathlib import Path

    from .realspeech.pypi_speech import extract, speaker_transcripts, summary

    rows = extract(Path(args.out), Path(args.cache), progress=not args.quiet)
    print(f"{args.out}: {summary(rows)}")
    for who, path in speaker_transcripts(Path(args.out)).items():
        print(
            f"  align the train part's {who} with: audio2anim data align --audio "
            f"{Path(args.out) / 'wav'} --transcripts {path} --voice {who} --out CORPUS"
        )
    return 0


# ---------------------------------------------------------------------------- wiring


def add_commands(subparsers) -> None:
    from .realspeech.asterisk import SOUNDS, TEST_FRACTION, TRANSCRIPTS

    data = subparsers.add_parser("data", help="build and prepare training data")
    sub = data.add_subparsers(dest="data_command", metavar="STEP", required=True)

    p = sub.add_parser("synth", help="synthetic speech corpus with exact phone timings")
    p.add_argument("--out", required=True, help="corpus folder (created or appended to)")
    p.add_argument("--hours", type=float, default=1.0, help="total audio to reach (default 1)")
    p.add_argument(
        "--voices",
        default="all",
        help="comma-separated voice ids (espeak:en-us+f3, festival:kal|ked|slt, flite:awb|rms, "
        "piper:joe, kokoro:af_heart…; ENGINE:all for all of an engine's) or 'all' (the 13 "
        "default voices)",
    )
    p.add_argument("--text", help="text file, one sentence per line (default: generated)")
    p.add_argument(
        "--augment",
        default="",
        help="comma list of speed,pitch,reverb,phone,noise,gain, or 'all' (default none)",
    )
    p.add_argument("--augment-prob", type=float, default=0.3, help="per augmentation (0.3)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_one_line_errors(cmd_synth))

    p = sub.add_parser("align", help="forced alignment of recordings to transcripts (pocketsphinx)")
    p.add_argument("--audio", required=True, help="folder of audio files (.wav, .flac, .mov, …)")
    p.add_argument(
        "--transcripts",
        help="folder of <stem>.txt files, or one file of 'stem<TAB>text' / 'stem|text' lines; "
        "without it every file is transcribed by Whisper first",
    )
    p.add_argument("--transcribe-missing", action="store_true",
                   help="transcribe (Whisper) the files --transcripts has no text for, rather "
                   "than leave them out")  # fmt: skip
    p.add_argument("--whisper", metavar="DIR",
                   help="Whisper model folder for transcribing (default: the packaged tiny.en, "
                   "the speech extra)")  # fmt: skip
    p.add_argument("--out", required=True, help="corpus folder (created or appended to)")
    p.add_argument("--voice", default="speaker", help="speaker name, for splits by voice")
    p.add_argument("--no-g2p", action="store_true", help="fail on words missing from CMUdict")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_one_line_errors(cmd_align))

    p = sub.add_parser(
        "asterisk", help="Asterisk's English prompts (real speech) -> aligned corpus"
    )
    p.add_argument("--out", required=True, help="corpus folder (created or appended to)")
    p.add_argument("--part", choices=("train", "test", "all"), default="all",
                   help="a side of the seeded split by prompt (default all)")  # fmt: skip
    p.add_argument("--test-fraction", type=float, default=TEST_FRACTION,
                   help=f"test side's share ({TEST_FRACTION})")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="split seed (0)")
    p.add_argument("--sounds", default=str(SOUNDS), help=f"prompt folder ({SOUNDS})")
    p.add_argument("--transcripts", default=str(TRANSCRIPTS), help="core-sounds-en.txt(.gz)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_one_line_errors(cmd_asterisk))

    from .realspeech.pypi_speech import CACHE, DEFAULT_OUT

    p = sub.add_parser(
        "pypi-speech",
        help="real English speech of many speakers from PyPI sdists' test data -> clips + transcripts",
    )
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help=f"folder for wav/, transcripts.tsv, speakers.tsv ({DEFAULT_OUT})")  # fmt: skip
    p.add_argument("--cache", default=str(CACHE), help=f"downloaded sdists ({CACHE})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_one_line_errors(cmd_pypi_speech))

    from .tts.kokoro import voices_dir

    p = sub.add_parser(
        "kokoro-voices",
        help="fetch the Kokoro TTS voices (npm kokoro-js) that data synth's kokoro:* voices use",
    )
    p.add_argument("--dest", help=f"folder for the voice files (default {voices_dir()})")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_one_line_errors(cmd_kokoro_voices))

    p = sub.add_parser("import-livelink", help="Live Link Face CSV takes + audio -> corpus params")
    p.add_argument("csv", nargs="+", help="take CSV file(s)")
    p.add_argument("--out", required=True, help="corpus folder (created or appended to)")
    p.add_argument("--audio", help="the take's audio (default: .wav/.mov beside the CSV)")
    p.add_argument("--id", help="utterance id (default: the CSV's file name)")
    p.add_argument("--voice", default="livelink", help="speaker name, for splits by voice")
    p.add_argument("--transcript", help="what was said (or @file): phones by forced alignment")
    p.add_argument("--frame-rate", type=float, default=50.0, help="model frame rate (50)")
    p.add_argument("--fps", type=float, help="the take's frame rate (default: inferred)")
    p.add_argument("--offset", type=float, default=0.0, help="audio time of the first row (s)")
    p.set_defaults(func=_one_line_errors(cmd_import_livelink))

    p = sub.add_parser("teach", help="corpus -> mouth/eyes ARKit parameters (procedural teacher)")
    p.add_argument("corpus")
    p.add_argument("--out", required=True, help="dataset folder (created or extended)")
    p.add_argument("--frame-rate", type=float, default=50.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_one_line_errors(cmd_teach))

    p = sub.add_parser("make-viseme-ids", help="corpus phone segments -> per-frame viseme IDs")
    p.add_argument("corpus")
    p.add_argument("--out", required=True, help="dataset folder (created or extended)")
    p.add_argument("--frame-rate", type=float, default=50.0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_one_line_errors(cmd_make_viseme_ids))

    p = sub.add_parser("append", help="per-utterance arrays -> one array + utterance offsets")
    p.add_argument("dataset")
    p.add_argument("--array", required=True, help="array name, e.g. mouth, viseme_ids")
    p.add_argument("--out", required=True, help="output .npz (data, offsets, ids)")
    p.add_argument("--part", choices=("train", "test"), help="only this side of the split")
    p.add_argument("--split", help="split file (default DATASET/split.json)")
    p.set_defaults(func=_one_line_errors(cmd_append))

    p = sub.add_parser("softmax", help="softmax of an array over its feature axis")
    p.add_argument("dataset")
    p.add_argument("--array", required=True)
    p.add_argument("--out-array", help="name of the result (default <array>_softmax)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.set_defaults(func=_one_line_errors(cmd_softmax))

    p = sub.add_parser("normalize", help="min-max or z-score an array; statistics saved")
    p.add_argument("dataset")
    p.add_argument("--array", required=True)
    p.add_argument("--method", choices=("minmax", "zscore"), default="minmax")
    p.add_argument("--out-array", help="name of the result (default <array>_norm)")
    p.add_argument("--part", choices=("train", "test"), help="fit statistics on this side only")
    p.add_argument("--split", help="split file (default DATASET/split.json)")
    p.set_defaults(func=_one_line_errors(cmd_normalize))

    p = sub.add_parser("split", help="seeded train/test split by utterance or by voice")
    p.add_argument("dataset")
    p.add_argument("--by", choices=("utterance", "voice"), default="utterance")
    p.add_argument("--test", type=float, default=0.1, help="test fraction (default 0.1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_one_line_errors(cmd_split))

    p = sub.add_parser("info", help="summarize a corpus or dataset: hours, voices, visemes")
    p.add_argument("path")
    p.add_argument("--frame-rate", type=float, default=50.0, help="for a corpus's histogram")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_one_line_errors(cmd_info))
