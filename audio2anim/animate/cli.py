"""``audio2anim animate IN [IN …] [-o OUT …] [--format F,…] [--out-dir DIR] [--fps N]``.

Animates audio files offline, as fast as possible, with a method graph loaded once
(`audio2anim.animate.api.Animator`), and writes each animation in the formats asked for
(`audio2anim.animate.outputs`: ARKit CSV, Live Link Face CSV, animation JSON, Oculus viseme CSV,
Rhubarb TSV/JSON/XML/DAT, glTF/GLB/VRM).

- One input and ``-o OUT`` (repeatable): the formats follow the extensions, or ``--format``
  names one format per ``-o`` (``-o take.csv --format livelink``).
- Otherwise inputs are files, folders (searched recursively for audio files), globs and
  ``@list.txt`` (one input per line); each input gets one file per ``--format`` (default
  ``csv``) named after it (``line01.wav`` → ``line01.csv``, ``line01.visemes.csv`` …), beside it
  or under ``--out-dir`` mirroring the input tree. ``--skip-existing`` leaves inputs whose
  outputs all exist.
- Several files run on a pool of worker processes (``--workers``, default min(cores, files)),
  each with its own models and one torch thread; one progress bar follows the files and the
  seconds of audio done. A file that cannot be animated (unreadable, empty, shorter than
  0.1 s, NaN samples) is reported and the others carry on; ``--report F.json`` writes the
  failures as JSON. Exit code: 0 all written, 1 some failed, 2 usage error (nothing run).
- ``--fps N`` resamples the animation (from the models' 50 fps) with
  `Animation.resample`; timecodes follow the new rate, and so does the video.
- ``--video OUT.mp4`` (one input) also renders the face into an MP4 (`audio2anim.face.clip`)
  at the output frame rate, with the input's audio as it is: its channels and its rate (the
  nearest AAC rate when AAC does not take it), not the 16 kHz mono the models hear.
- Known words (`audio2anim.animate.text`): ``--text "the words"`` or ``--dialog FILE`` (one
  input), or ``--dialog-dir DIR`` (a batch: the words of ``IN/sub/line01.wav`` are in
  ``DIR/sub/line01.txt``, the input tree mirrored as ``--out-dir`` mirrors it; ``--dialog-dir``
  = the input folder reads ``line01.txt`` beside ``line01.wav``). The visemes then follow a
  forced alignment of the words. A transcript that cannot be used (no words, alignment fails,
  the words do not fit the audio, no ``.txt`` for an input) is a one-line warning naming the
  file; that file is animated from the audio alone and counts as written (exit code 0; the
  warnings go into ``--report``). A ``--dialog`` file that is missing or unreadable, and a
  ``--dialog-dir`` with no transcript for any input, are usage errors (exit code 2).

Outputs and options are checked before any audio is processed: an unknown extension, an
output that is an input, two outputs that are the same file, a folder that cannot be written,
and a ``--size`` H.264 does not take are refused. Every file is written under a temporary name
and renamed when complete (the MP4 once its index is written).

SIGINT/SIGTERM (`audio2anim.graph.stopping`): the first stops the graph; what was animated is
written (a shorter, complete file) and a video being rendered is finalized with the frames
rendered so far; later steps are skipped; exit code 130 (SIGINT) or 143 (SIGTERM). A second
signal aborts: outputs not yet complete are left absent. A batch stops between files: no file
is started after the first signal, the workers finish the one they are on, and the summary and
``--report`` (``not_done``) name the inputs left without outputs; a second signal terminates the
workers. The workers ignore SIGINT (a terminal's Ctrl-C reaches them too): the parent decides.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from audio2anim.graph.cli import add_checkpoints_argument

from .api import DEFAULT_GRAPH

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".opus")


class UsageError(Exception):
    """A command line that cannot run; exit code 2."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "animate",
        help="animate audio files offline → ARKit CSV, Live Link CSV, JSON, Rhubarb cues, GLB …",
        description="Run a method graph over audio files as fast as possible and write the "
        "animation in the formats asked for. Exit code 0: all written; 1: some inputs failed; "
        "2: usage error.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="IN",
        help="audio files, folders (searched recursively), globs or @list.txt",
    )  # fmt: skip
    p.add_argument(
        "-o", "--output", dest="outputs", action="append", type=Path, default=[],
        metavar="OUT", help="output file (one input; repeatable; format by extension)",
    )  # fmt: skip
    p.add_argument(
        "--format", dest="formats", action="append", default=[], metavar="F[,F…]",
        help="output formats: csv livelink json visemes tsv xml dat rhubarb-json glb gltf vrm",
    )  # fmt: skip
    p.add_argument("--out-dir", type=Path, help="write outputs here, mirroring the input tree")
    p.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs exist")
    p.add_argument("--fps", type=int, help="output frame rate (24, 25, 30, 50, 60 or any > 0)")
    p.add_argument("--workers", type=int, help="worker processes (default min(cores, files))")
    p.add_argument(
        "--ray", metavar="ADDRESS",
        help="run the batch on the Ray cluster at ADDRESS (HOST:PORT, auto; docs/batch.md)",
    )  # fmt: skip
    p.add_argument("--report", type=Path, metavar="F.json", help="write the failures as JSON")
    p.add_argument("--model", type=Path, help="GLB/VRM/glTF to animate (default: shipped head)")
    p.add_argument(
        "--graph", type=Path, default=None,
        help=f"method graph (default: {DEFAULT_GRAPH}, the best method on CPU)",
    )  # fmt: skip
    p.add_argument("--video", type=Path, metavar="OUT.mp4", help="also render an MP4 (one input)")
    p.add_argument("--size", type=int, default=512, help="video frame size in pixels (512)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="NODE.PARAM=VALUE",
        help="override a node parameter of the graph (repeatable)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    words = p.add_argument_group("known words: visemes follow a forced alignment of the text")
    words.add_argument("--text", metavar="WORDS", help="the words said (one input)")
    words.add_argument("--dialog", type=Path, metavar="FILE", help="text file of the words said")
    words.add_argument(
        "--dialog-dir", type=Path, metavar="DIR",
        help="transcripts of a batch: IN/sub/x.wav's words in DIR/sub/x.txt",
    )  # fmt: skip
    add_checkpoints_argument(p)
    p.set_defaults(func=cmd_animate)


@dataclass
class Job:
    """One input and its outputs ``[(path, format)]``."""

    input: Path
    outputs: list[tuple[Path, str]] = field(default_factory=list)
    text: str | None = None  # the words said (--text, --dialog)
    dialog: Path | None = None  # their file, read by the worker (--dialog-dir)


# ------------------------------------------------------------------------- planning


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (recursive, audio extensions), globs and ``@list.txt`` → files, in order."""
    found: list[Path] = []
    for item in items:
        if item.startswith("@"):
            listing = Path(item[1:])
            try:
                lines = listing.read_text(encoding="utf-8").splitlines()
            except OSError as e:
                raise UsageError(f"{listing}: cannot read the input list ({e.strerror})") from None
            base = listing.parent
            entries = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
            found += expand_inputs([e if os.path.isabs(e) else str(base / e) for e in entries])
            continue
        path = Path(item)
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
            )
        elif path.is_file():
            found.append(path)
        elif glob.has_magic(item):
            hits = sorted(Path(h) for h in glob.glob(item, recursive=True))
            if not hits:
                raise UsageError(f"{item}: no file matches")
            found += [h for h in hits if h.is_file()]
        else:
            raise UsageError(f"{item}: no such file")
    seen: set[Path] = set()
    unique = []
    for p in found:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _formats(args) -> list[str]:
    from .outputs import check_format

    names = [f.strip() for item in args.formats for f in item.split(",") if f.strip()]
    return [check_format(n) for n in names]


def plan_jobs(args, inputs: list[Path]) -> list[Job]:
    """Every input's outputs, checked before anything runs (`UsageError` otherwise)."""
    from .outputs import EXTENSION, OutputError, format_of

    try:
        formats = _formats(args)
        if args.outputs:
            if len(inputs) != 1:
                raise UsageError("-o takes one input; for several, use --format and --out-dir")
            if args.out_dir:
                raise UsageError("give -o or --out-dir, not both")
            if formats and len(formats) != len(args.outputs):
                raise UsageError(
                    f"{len(args.outputs)} outputs and {len(formats)} formats: give one --format "
                    "per -o, or none (formats by extension)"
                )
            outs = [
                (o, formats[i] if formats else format_of(o)) for i, o in enumerate(args.outputs)
            ]
            for out, _ in outs:
                try:  # like the README's `-o out/speech.csv` on a fresh clone: make the folder
                    out.parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise UsageError(
                        f"{out}: cannot create folder {out.parent} ({e.strerror})"
                    ) from None
            jobs = [Job(inputs[0], outs)]
        else:
            formats = formats or ["csv"]
            jobs = []
            for inp in inputs:
                folder = inp.parent
                if args.out_dir:
                    folder = args.out_dir / _relative_folder(inp, args.inputs)
                stem = folder / inp.stem
                jobs.append(Job(inp, [(Path(f"{stem}{EXTENSION[f]}"), f) for f in formats]))
    except OutputError as e:
        raise UsageError(str(e)) from None
    if args.video and len(jobs) != 1:
        raise UsageError("--video takes one input")
    taken = {p.resolve(): p for p in inputs}
    if args.model:
        taken[args.model.resolve()] = args.model
    written: dict[Path, Path] = {}
    for job in jobs:
        extra = [(args.video, "video")] if args.video else []
        for out, _ in job.outputs + extra:
            key = out.resolve()
            if key in taken:
                raise UsageError(f"{out}: the output would overwrite an input; refused")
            if key in written:
                raise UsageError(f"{out}: written twice (two outputs are the same file)")
            written[key] = out
    return jobs


def attach_text(args, jobs: list[Job]) -> None:
    """``--text`` / ``--dialog`` / ``--dialog-dir`` → each job's words, checked before any audio
    is read (`UsageError` otherwise)."""
    from .text import DialogError, check_words, read_dialog

    text, dialog, folder = (getattr(args, k, None) for k in ("text", "dialog", "dialog_dir"))
    given = [n for n, v in (("--text", text), ("--dialog", dialog), ("--dialog-dir", folder))
             if v is not None]  # fmt: skip
    if len(given) > 1:
        raise UsageError(
            f"give one of --text, --dialog and --dialog-dir, not {' and '.join(given)}"
        )
    if not given or not jobs:
        return
    try:
        if folder is None:
            if len(jobs) != 1:
                raise UsageError(f"{given[0]} takes one input; for several, use --dialog-dir")
            if dialog is not None:
                jobs[0].text = read_dialog(dialog)
            else:
                check_words(text, "--text")
                jobs[0].text = text
            return
    except DialogError as e:
        raise UsageError(str(e)) from None
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such dialog folder")
    for job in jobs:
        job.dialog = folder / _relative_folder(job.input, args.inputs) / f"{job.input.stem}.txt"
    if not any(job.dialog.is_file() for job in jobs):
        raise UsageError(f"{folder}: no transcript for any input (e.g. {jobs[0].dialog})")


def _relative_folder(inp: Path, items: list[str]) -> Path:
    """Where ``inp`` sits under the folder (or glob root) it was found from."""
    resolved = inp.resolve()
    for item in items:
        root = Path(item.split("*")[0].split("?")[0].split("[")[0] or ".")
        root = root if root.is_dir() else root.parent
        try:
            return resolved.parent.relative_to(root.resolve())
        except ValueError:
            continue
    return Path()


# ------------------------------------------------------------------------- running


@dataclass
class Settings:
    graph: str
    overrides: tuple[str, ...]
    checkpoints: str | None
    fps: int | None
    model: str | None


_ANIMATOR = None  # the worker process's Animator


class JobResult(tuple):
    """``(input, seconds of audio, error or None)``; ``.warnings``: one-line warnings."""

    warnings: tuple[str, ...] = ()

    @classmethod
    def make(cls, result: tuple, warnings: list[str]) -> JobResult:
        out = cls(result)
        out.warnings = tuple(warnings)
        return out


def _init_worker(settings: Settings) -> None:
    global _ANIMATOR
    from .api import Animator

    # no warm-up run: a batch's first file pays the models' set-up instead, once
    _ANIMATOR = Animator(settings.graph, settings.overrides, settings.checkpoints, warm_up=False)


def animate_job(
    job: Job,
    settings: Settings,
    progress=None,
    keep: list | None = None,
    stopped=None,
    partial: bool = False,
) -> JobResult | None:
    """Animate one input and write its outputs → (input, seconds of audio, error or None), a
    `JobResult` carrying the job's warnings (a transcript not used).
    ``keep``: a list the animation (at the output rate) is appended to. ``stopped()``: asked
    once the audio is animated; when true the run was cut short and nothing is written (→
    None), unless ``partial`` and some frames were animated: then the shorter animation is."""
    import warnings

    from .text import TextAlignmentWarning

    notes: list[str] = []
    text = job.text
    if job.dialog is not None:
        text = _dialog_of(job, notes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TextAlignmentWarning)
        result = _animate_job(job, settings, progress, text, keep, stopped, partial)
    for w in caught:
        if issubclass(w.category, TextAlignmentWarning):
            notes.append(str(w.message))
        else:  # not ours: shown as it would have been
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return None if result is None else JobResult.make(result, notes)


def _dialog_of(job: Job, notes: list[str]) -> str | None:
    """The words of a --dialog-dir job, or None with a warning in ``notes``."""
    from .text import DialogError, read_dialog

    try:
        return read_dialog(job.dialog)
    except DialogError as e:
        notes.append(f"{job.input}: {e}; visemes recognized from the audio")
        return None


def _animate_job(
    job: Job, settings: Settings, progress, text, keep, stopped, partial
) -> tuple[str, float, str | None] | None:
    from .api import AnimateError, audio_seconds
    from .outputs import OutputError, write_output

    assert _ANIMATOR is not None
    seconds = audio_seconds(job.input)
    try:
        try:
            anim = _ANIMATOR.animate(job.input, progress=progress, text=text)
        except AnimateError:
            if stopped is not None and stopped():  # cut short before its first frame
                return None
            raise
        if stopped is not None and stopped() and not partial:  # cut short: nothing is written
            return None
        if settings.fps:
            anim = anim.resample(settings.fps)
        for path, fmt in job.outputs:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"{path}: cannot create folder ({e.strerror})") from None
            write_output(path, anim, fmt, settings.model)
        if keep is not None:
            keep.append(anim)
    except (AnimateError, OutputError) as e:
        return str(job.input), 0.0 if seconds != seconds else seconds, str(e)
    except Exception as e:  # anything else: still one line, the batch carries on
        return str(job.input), 0.0, f"{job.input}: {type(e).__name__}: {e}".splitlines()[0]
    return str(job.input), seconds, None


def cmd_animate(args: argparse.Namespace) -> int:
    from audio2anim.graph.stopping import StopSignals

    with StopSignals() as stops:
        rc = _animate(args, stops)
    return stops.exit_code(rc)


def _check_video(args) -> None:
    from audio2anim.face.video import VideoError, check_size, check_writable

    try:
        check_size(args.size)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.video:
        try:
            check_writable(args.video)
        except VideoError as e:
            raise UsageError(str(e)) from None


def _animate(args: argparse.Namespace, stops) -> int:
    import asyncio

    from audio2anim.graph.stopping import Aborted

    try:
        if args.fps is not None and args.fps <= 0:
            raise UsageError(f"--fps {args.fps}: must be a positive integer")
        if args.workers is not None and args.workers <= 0:
            raise UsageError(f"--workers {args.workers}: must be at least 1")
        if args.ray is not None:
            from audio2anim.resources import missing_dependency

            missing = missing_dependency("animate --ray", "ray")
            if missing:
                raise UsageError(missing)
            if args.video:
                raise UsageError("--video renders on this machine; run it without --ray")
        if args.model and not args.model.is_file():
            raise UsageError(f"{args.model}: no such model file")
        inputs = expand_inputs(args.inputs)
        if not inputs:
            raise UsageError("no audio files found in the inputs")
        jobs = plan_jobs(args, inputs)
        attach_text(args, jobs)
        _check_video(args)
        for job in jobs:
            for out, _ in job.outputs:
                if out.parent.is_dir() and not os.access(out.parent, os.W_OK | os.X_OK):
                    raise UsageError(f"{out}: folder {out.parent} is not writable")
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    skipped = 0
    if args.skip_existing:
        todo = [j for j in jobs if not all(p.is_file() for p, _ in j.outputs)]
        skipped = len(jobs) - len(todo)
        jobs = todo
    settings = Settings(
        str(args.graph or DEFAULT_GRAPH),
        tuple(args.overrides),
        str(args.checkpoints) if args.checkpoints else None,
        args.fps,
        str(args.model) if args.model else None,
    )
    from audio2anim.graph.errors import GraphError

    t0 = time.perf_counter()
    kept: list = []  # the animation, for --video
    try:
        outcome = _run_jobs(jobs, settings, args, stops, kept if args.video else None)
        results = outcome.results
    except (GraphError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (asyncio.CancelledError, Aborted, KeyboardInterrupt):
        print(f"{stops.first or 'signal'}: aborted; no output written", file=sys.stderr)
        return 1
    except Exception:
        if not stops.received:
            raise
        # stopped while the models loaded: nothing was animated
        print(f"{stops.first}: stopped before any audio was animated", file=sys.stderr)
        return 0
    video = None
    if len(jobs) == 1 and outcome.aborted:
        print(f"{stops.first or 'signal'}: aborted; no output written", file=sys.stderr)
        return 1
    if len(jobs) == 1 and outcome.not_done:
        print(f"{stops.first}: stopped before any audio was animated", file=sys.stderr)
        return 0
    if args.video and kept and results[0][2] is None and not stops.received:
        try:
            video, err = _render_video(jobs[0].input, kept[0], args, stops)
        except (asyncio.CancelledError, Aborted, KeyboardInterrupt):
            video, err = None, f"{args.video}: aborted; not written"
        if err:
            kept = list(getattr(results[0], "warnings", ()))
            results[0] = JobResult.make((results[0][0], results[0][1], err), kept)
    wall = time.perf_counter() - t0
    failures = [{"input": i, "error": e} for i, _, e in results if e is not None]
    notes = [{"input": r[0], "warning": w} for r in results for w in getattr(r, "warnings", ())]
    for n in notes:
        print(f"warning: {n['warning']}", file=sys.stderr)
    for f in failures:
        print(f"error: {f['error']}", file=sys.stderr)
    if args.report:
        from audio2anim.formats.animation import write_atomic

        doc = {"inputs": len(jobs) + skipped, "written": len(results) - len(failures),
               "skipped": skipped, "failures": failures}  # fmt: skip
        if notes:
            doc["warnings"] = notes
        if outcome.not_done:  # stopped by a signal: these inputs have no output
            doc |= {"stopped_by": stops.first, "not_done": outcome.not_done}
        write_atomic(args.report, json.dumps(doc, indent=2) + "\n")
    seconds = sum(s for _, s, e in results if e is None)
    done = len(results) - len(failures)
    if len(jobs) == 1 and not failures and not outcome.not_done:
        outs = ", ".join(str(p) for p, _ in jobs[0].outputs)
        print(
            f"{outs}: {seconds:.2f} s of audio animated in {wall:.2f} s "
            f"({seconds / max(wall, 1e-9):.1f}x real time) with {settings.graph}"
            + (f"; video {args.video} ({video})" if video else "")
            + ("; no video (stopped first)" if args.video and not video and stops.received else "")
            + (f"; stopped by {stops.first}" if stops.received else ""),
            file=sys.stderr,
        )
    else:
        print(
            f"{done} of {len(jobs)} files animated ({seconds:.1f} s of audio in {wall:.1f} s, "
            f"{seconds / max(wall, 1e-9):.1f}x real time), {len(failures)} failed"
            + (f", {skipped} skipped (outputs exist)" if skipped else "")
            + (
                f", {len(outcome.not_done)} not done ({stops.first or 'stopped'}"
                + ("; aborted" if outcome.aborted else "")
                + ")"
                if outcome.not_done
                else ""
            ),
            file=sys.stderr,
        )
    return 1 if failures or outcome.aborted else 0


@dataclass
class Outcome:
    """What a batch run did: one ``(input, seconds, error or None)`` per file animated or failed,
    and the inputs not done because a signal stopped the run (``aborted``: a second one)."""

    results: list[tuple[str, float, str | None]] = field(default_factory=list)
    not_done: list[str] = field(default_factory=list)
    aborted: bool = False


def _run_jobs(
    jobs: list[Job], settings: Settings, args, stops, keep: list | None = None
) -> Outcome:
    """Animate ``jobs`` in this process, on a pool of worker processes or on a Ray cluster.

    The first signal ends the run between files: no file is started after it; a worker's file
    in progress is finished (workers ignore SIGINT, which a terminal sends to them too), while
    in this process the file being animated is cut short, so it is not written. A second
    signal aborts: the workers are terminated and their temporary files removed. The files
    not written are listed in ``Outcome.not_done``.
    """
    import asyncio

    from tqdm import tqdm

    from audio2anim.graph.stopping import Aborted

    from .api import audio_seconds

    out = Outcome()
    if not jobs:
        return out
    seconds = {str(j.input): audio_seconds(j.input) for j in jobs}
    total = sum(s for s in seconds.values() if s == s)
    workers = args.workers or min(os.cpu_count() or 1, len(jobs))
    workers = min(workers, len(jobs))
    batch = len(jobs) > 1
    # progress is clamped to the bar's total (rounded), so the bar never runs past 100 %
    with tqdm(
        total=round(total, 2), unit="s", desc="animate", disable=args.quiet, leave=False,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} s audio{postfix} [{elapsed}<{remaining}]",
    ) as bar:  # fmt: skip
        bar.set_postfix_str(f"0/{len(jobs)} files")

        def finished(result) -> None:
            out.results.append(result)
            if result[2] is None:
                bar.update(max(0.0, min(bar.n + result[1], bar.total) - bar.n))
            bar.set_postfix_str(f"{len(out.results)}/{len(jobs)} files")

        started: set[str] = set()
        try:
            if getattr(args, "ray", None):
                from .ray_batch import run_on_ray

                run_on_ray(args.ray, jobs, settings, stops, finished, started,
                           _init_worker, animate_job, args.workers)  # fmt: skip
            elif workers == 1:
                _init_worker(settings)
                for job in jobs:
                    if stops.received:
                        break
                    started.add(str(job.input))
                    base = bar.n

                    def progress(s: float, base=base) -> None:
                        bar.update(max(0.0, min(base + s, bar.total) - bar.n))

                    result = animate_job(
                        job, settings, None if batch else progress, keep,
                        stopped=lambda: bool(stops.received), partial=not batch,
                    )  # fmt: skip
                    if result is not None:  # None: cut short by a signal, not written
                        bar.n = base
                        finished(result)
            else:
                _run_pool(jobs, settings, workers, stops, finished, started)
        except (Aborted, asyncio.CancelledError):  # a second signal
            out.aborted = True
    done = {r[0] for r in out.results}
    out.not_done = [str(j.input) for j in jobs if str(j.input) not in done]
    if out.not_done:
        _remove_temporaries([j for j in jobs if str(j.input) in started])
    order = {str(j.input): k for k, j in enumerate(jobs)}
    out.results.sort(key=lambda r: order.get(r[0], 0))
    return out


def _init_pool_worker(settings: Settings) -> None:
    """A pool worker: SIGINT ignored (the parent decides), SIGTERM ends it; the Animator."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _ANIMATOR is None:  # spawned, not forked from a parent that built it
        _init_worker(settings)


def _run_pool(jobs: list[Job], settings: Settings, workers: int, stops, finished, started) -> None:
    """``jobs`` on ``workers`` forked processes, a few files ahead of them at a time, so that a
    signal leaves little queued: after the first, nothing more is handed out; the second
    (`Aborted`, raised by the handler while this waits) terminates the workers."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from audio2anim.graph.stopping import Aborted

    # the graph is built here, once: forked workers inherit it and the imports, and each loads
    # its own model sessions on its first file (on a cold ONNX export cache each exports too,
    # into the shared cache, whose entries are renamed into place when complete)
    _init_worker(settings)
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    pool = ProcessPoolExecutor(workers, ctx, _init_pool_worker, (settings,))
    todo = list(reversed(jobs))
    running: dict = {}
    try:
        while todo or running:
            while todo and len(running) < 2 * workers and not stops.received:
                job = todo.pop()
                started.add(str(job.input))
                running[pool.submit(animate_job, job, settings)] = job
            if not running:
                break
            ready, _ = wait(running, timeout=0.5, return_when=FIRST_COMPLETED)
            for fut in ready:
                job = running.pop(fut)
                try:
                    result = fut.result()
                except Exception as e:  # a worker died
                    result = (str(job.input), 0.0, f"{job.input}: worker failed ({e})")
                finished(result)
            if stops.received:
                todo.clear()
    except Aborted:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()  # a second signal: no file is finished
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True, cancel_futures=True)


def _remove_temporaries(jobs: list[Job]) -> None:
    """Remove the temporary files (``.NAME.PID.tmp``) a terminated worker may have left."""
    for job in jobs:
        for path, _ in job.outputs:
            for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
                tmp.unlink(missing_ok=True)


def _render_video(audio: Path, anim, args, stops) -> tuple[str | None, str | None]:
    """Render ``anim`` (already at the output rate) into ``args.video`` with the input's audio
    as it is (its rate and channels) → (what was written, error line)."""
    from audio2anim.audio import read_audio_channels
    from audio2anim.face.clip import render_clip
    from audio2anim.face.video import VideoError

    try:
        samples, rate = read_audio_channels(audio)
        writer = render_clip(
            args.video, anim.values, anim.names, anim.fps, audio=samples, audio_rate=rate,
            size=args.size, stopped=lambda: bool(stops.received),
        )  # fmt: skip
    except VideoError as e:
        return None, str(e)
    except (ValueError, OSError) as e:
        return None, f"{args.video}: {e}".splitlines()[0]
    if not writer.frames_written:
        return None, None  # stopped before the first frame: nothing to write
    return (
        f"{writer.frames_written} frames at {anim.fps:g} fps, audio {writer.out_rate} Hz "
        f"{writer.channels} ch",
        None,
    )
