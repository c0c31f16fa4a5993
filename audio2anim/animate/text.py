"""Known words drive the visemes: forced alignment of a transcript → a viseme posterior stream.

``audio2anim animate --text "the words"`` / ``--dialog FILE`` / ``--dialog-dir DIR`` and
``Animator.animate(..., text=...)`` (Rhubarb Lip Sync's ``--dialogFile``): when the words of a
recording are known, its visemes need not be recognized from the audio. The transcript is
force-aligned to the audio by pocketsphinx (`audio2anim.data.align`, espeak-ng pronouncing the
words CMUdict lacks); the aligned ARPAbet phones become visemes (`audio2anim.visemes`, the
tables the training labels use) and then a 50 Hz posterior stream (`aligned_posteriors`) that
replaces the recognizer's (``feature.visemes`` → ``feature.visemes_given``) in front of the
SAME viseme predictor, smoothing and outputs, so the parameters of the two paths are made
alike, frame for frame (same frame count and times).

The stream is sharp but not one-hot: each frame takes its viseme with probability
1 − ``SMOOTHING`` (0.15), the rest spread evenly over the 15 visemes (label smoothing). The
viseme predictors trained on viseme one-hots smoothed by 0 to 0.3 (and on the front end's
posteriors), so this input is inside what they learned.

The words fix the sequence of visemes; where its boundaries fall is refined by the recognizer
(`refine_timing`, on by default): pocketsphinx places boundaries tens of ms from where a
synthesizer put them, while the trained front end, on voices like those it learned from, hears
them closer. A left-to-right Viterbi path through the aligned viseme runs, scored by the
recognizer's posteriors and a cost for each frame a run moves outside its aligned span (at
most ±``REFINE_BAND`` frames, 120 ms), keeps every viseme of the words and moves only the
boundaries (`bench/text_alignment.py` measures both timings). Without refinement
(``refine=False``) the 10 ms frames of the alignment are averaged in pairs into 50 Hz frames, so
a frame that straddles a boundary is a mix of the two visemes.

When the text is not used (``TextVisemes.reason`` says why, one line): the transcript has no
words, pocketsphinx's search fails (no path through the words), or the words do not fit the
audio. Forced alignment always finds *some* path when the beam is wide, so fit is checked
against what the recognizer hears: `fit_score` is the fraction of frames whose aligned viseme
the recognizer's arg-max shows within ±``FIT_TOLERANCE`` frames (±40 ms); below ``MIN_FIT``
the words are taken not to match and the recognized visemes are kept for the whole file. The
threshold was chosen between the scores of right transcripts and of other clips' words on the
real-speech sets (docs/experiments.md); `bench/text_alignment.py` reports how often it refuses
each. It catches another sentence, and most but not all other words on clips of a word or
two; one wrong or missing word in a sentence passes, aligned as well as pocketsphinx can.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio2anim.visemes import N_VISEMES, viseme_ids

FRAME_RATE = 50  # the viseme predictors' input rate
SMOOTHING = 0.15  # label smoothing of the aligned one-hots
FIT_TOLERANCE = 2  # frames (±40 ms at 50 Hz) a boundary may sit from the recognizer's
MIN_FIT = 0.4  # below: the words are taken not to match the audio
REFINE_BAND = 6  # frames (±120 ms) a viseme may move from where the aligner put it
REFINE_COST = 0.5  # log-score per frame it moves outside the aligner's span
REFINE_FLOOR = 0.05  # added to the recognizer's posterior before its log


class DialogError(ValueError):
    """A transcript that cannot be used at all (missing or unreadable file, no words)."""


@dataclass
class TextVisemes:
    """What a transcript gave: ``probs`` [frames, 15] at 50 Hz, or None and ``reason``."""

    probs: np.ndarray | None
    reason: str | None = None
    fit: float | None = None
    segments: list = field(default_factory=list)  # the aligned ARPAbet `PhoneSegment`s


def read_dialog(path: str | Path) -> str:
    """The transcript in a text file (UTF-8); `DialogError` naming it when missing, unreadable
    or without words."""
    path = Path(path)
    if not path.is_file():
        raise DialogError(f"{path}: no such dialog file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or type(e).__name__
        raise DialogError(f"{path}: cannot read the dialog file ({why})") from None
    check_words(text, str(path))
    return text.strip()


def check_words(text: str, where: str = "--text") -> list[str]:
    """The words of ``text`` as the aligner reads them; `DialogError` when there are none."""
    from audio2anim.data.align import transcript_words

    try:
        return transcript_words(text)
    except ValueError:
        raise DialogError(f"{where}: the transcript has no words") from None


def aligned_posteriors(segments, n_frames: int, smoothing: float = SMOOTHING) -> np.ndarray:
    """ARPAbet phone segments (start, end, phone) → [n_frames, 15] viseme probabilities at
    50 Hz: 10 ms frames labelled by their phone, label-smoothed, averaged in pairs."""
    n100 = 2 * n_frames
    ids = viseme_ids([(s[0], s[1], s[2]) for s in segments], "arpabet", 100.0, n100)
    return smoothed_onehots(ids, smoothing).reshape(n_frames, 2, N_VISEMES).mean(axis=1)


def fit_score(aligned: np.ndarray, recognized: np.ndarray, tolerance: int = FIT_TOLERANCE) -> float:
    """Fraction of the speech frames (not silence in both) whose arg-max viseme in ``aligned``
    is the arg-max of ``recognized`` at some frame within ±``tolerance`` (both [frames, 15] at
    the same rate); 1.0 when every frame is silence in both."""
    n = min(len(aligned), len(recognized))
    if n == 0:
        return float("nan")
    a = np.asarray(aligned[:n]).argmax(axis=1)
    r = np.asarray(recognized[:n]).argmax(axis=1)
    speech = (a != 0) | (r != 0)  # frames both call silence would flatter any transcript
    if not speech.any():
        return 1.0
    padded = np.pad(r, tolerance, mode="edge")
    hit = np.zeros(n, bool)
    for shift in range(2 * tolerance + 1):
        hit |= a == padded[shift : shift + n]
    return float(hit[speech].mean())


def refine_timing(
    ids: np.ndarray,
    recognized: np.ndarray,
    band: int = REFINE_BAND,
    cost: float = REFINE_COST,
    floor: float = REFINE_FLOOR,
) -> np.ndarray:
    """Aligned viseme IDs [frames] → the same sequence of visemes with its boundaries moved to
    where the recognizer's posteriors [frames, 15] place them: a left-to-right Viterbi path
    through the runs of ``ids`` (each keeps at least one frame, none is added or dropped)
    scored by log(``floor`` + posterior) less ``cost`` per frame outside the run's aligned
    span, at most ``band`` frames outside it. Returns ``ids`` unchanged if no path fits."""
    ids = np.asarray(ids)
    n = min(len(ids), len(recognized))
    if n < 2:
        return ids
    change = np.flatnonzero(np.diff(ids[:n])) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])  # exclusive
    vis = ids[starts]
    logp = np.log(floor + np.asarray(recognized[:n], np.float64))
    # frame i may belong to the runs lo..hi-1: those whose span widened by `band` holds it
    # (a window that only moves forward, so memory stays linear in the frames)
    lo = np.searchsorted(ends - 1 + band, np.arange(n), side="left")
    hi = np.searchsorted(starts - band, np.arange(n), side="right")
    best = np.full(len(vis) + 1, -np.inf)  # best[j + 1]: best score ending in run j; best[0] pad
    moved: list[np.ndarray] = []  # per frame, over its window: entered the run at this frame
    for i in range(n):
        a, b = lo[i], hi[i]
        if i:
            best[1 : a + 1] = -np.inf  # runs that can no longer hold a frame
        j = np.arange(a, b)
        outside = np.maximum(0, np.maximum(starts[j] - i, i - (ends[j] - 1)))
        score = logp[i, vis[j]] - cost * outside
        if i == 0:
            step = np.where(j == 0, 0.0, -np.inf)
            entered = np.zeros(len(j), bool)
        else:
            stay, advance = best[a + 1 : b + 1], best[a:b]
            entered = advance > stay
            step = np.maximum(stay, advance)
        best[a + 1 : b + 1] = step + score
        moved.append(entered)
    if not np.isfinite(best[-1]) or hi[-1] < len(vis):
        return ids
    out = ids.copy()
    j = len(vis) - 1
    for i in range(n - 1, -1, -1):
        out[i] = vis[j]
        if moved[i][j - lo[i]]:
            j -= 1
    return out


def smoothed_onehots(ids: np.ndarray, smoothing: float = SMOOTHING) -> np.ndarray:
    """Viseme IDs [frames] → [frames, 15]: 1 − ``smoothing`` on the ID, the rest spread evenly."""
    p = np.full((len(ids), N_VISEMES), smoothing / N_VISEMES, np.float32)
    p[np.arange(len(ids)), ids] += 1.0 - smoothing
    return p


def text_visemes(
    audio: np.ndarray,
    rate: int,
    text: str,
    n_frames: int,
    recognized: np.ndarray | None = None,
    min_fit: float = MIN_FIT,
    refine: bool = True,
) -> TextVisemes:
    """Align ``text`` to ``audio`` → `TextVisemes` of ``n_frames`` 50 Hz frames. With
    ``recognized`` (the recognizer's 50 Hz posteriors of the same audio) the fit is checked
    (below ``min_fit`` the result has no ``probs`` and says why) and, with ``refine``, the
    boundaries move to where the recognizer hears them (`refine_timing`). Never raises for a
    transcript that does not fit; `DialogError` only for one without words."""
    from audio2anim.data.align import align

    check_words(text)
    try:
        segments = align(np.asarray(audio, np.float32), rate, text)
    except (ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        detail = msg.rsplit(": ", 1)[-1]  # align's message repeats the text before the cause
        return TextVisemes(None, f"forced alignment failed (pocketsphinx: {_short(detail)})")
    probs = aligned_posteriors(segments, n_frames)
    fit = None
    if recognized is not None and len(recognized):
        fit = fit_score(probs, recognized)
        if fit < min_fit:
            return TextVisemes(
                None,
                f"the words do not fit the audio (fit {fit:.2f} < {min_fit:.2f}: the aligned "
                "visemes disagree with the recognized ones)",
                fit,
                segments,
            )
        if refine:
            ids = refine_timing(probs.argmax(axis=1), recognized)
            probs = smoothed_onehots(ids)
    return TextVisemes(probs, None, fit, segments)


class TextAlignmentWarning(UserWarning):
    """A transcript that was not used: the visemes were recognized from the audio instead."""


async def with_text(
    animator, graph, source: str, audio, rate, text: str, progress=None, refine: bool = True
):
    """`Animator.animate_async` with the words known (see the module docstring): recognize as
    usual, align ``text``, and when it fits run the graph again with the aligned visemes in
    place of the recognized ones. The caller has checked that ``text`` has words and that the
    graph has a viseme node (``animator.viseme_node``)."""
    import asyncio
    import warnings

    animator.text_visemes = None
    recognized = await animator._run(graph, source, progress)
    samples, samples_rate = _samples(graph)
    n_frames = int(np.ceil(len(samples) / samples_rate * FRAME_RATE)) + 1
    found = await asyncio.to_thread(
        text_visemes, samples, samples_rate, text, n_frames, recognized.visemes, MIN_FIT, refine
    )
    if found.probs is None:
        message = f"{source}: text not used, visemes recognized from the audio: {found.reason}"
        recognized.metadata.update(visemes="audio", text_warning=message)
        warnings.warn(message, TextAlignmentWarning, stacklevel=4)
        return recognized
    animator.text_visemes = found
    graph = given_visemes_graph(graph, animator.viseme_node, found.probs)
    anim = await animator._run(graph, source, progress)
    anim.metadata["visemes"] = "text"
    return anim


def given_visemes_graph(graph, node: str, probs: np.ndarray):
    """``graph`` with its viseme node ``node`` replaced by ``feature.visemes_given`` replaying
    ``probs`` (50 Hz); the rest of the graph is the same objects."""
    import dataclasses

    from audio2anim.graph.spec import Node
    from audio2anim.operators.feature_visemes_given import GivenVisemeParams, GivenVisemes

    nodes = dict(graph.nodes)
    nodes[node] = Node(node, GivenVisemes, GivenVisemeParams(probs=probs, frame_rate=FRAME_RATE))
    return dataclasses.replace(graph, nodes=nodes)


def _samples(graph) -> tuple[np.ndarray, int]:
    """The audio of the graph's source node (``source.array`` or ``source.file``)."""
    params = graph.nodes["src"].params
    if hasattr(params, "samples"):
        return params.samples, params.rate
    from audio2anim.audio import read_audio

    return read_audio(params.path)


def _short(msg: str, limit: int = 120) -> str:
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


__all__ = [
    "FIT_TOLERANCE",
    "MIN_FIT",
    "SMOOTHING",
    "DialogError",
    "TextAlignmentWarning",
    "TextVisemes",
    "aligned_posteriors",
    "check_words",
    "fit_score",
    "given_visemes_graph",
    "read_dialog",
    "refine_timing",
    "smoothed_onehots",
    "text_visemes",
    "with_text",
]
