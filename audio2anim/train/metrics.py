"""Evaluation figures of the front ends and the predictors (numpy only).

Definitions (parameters at 50 Hz; a phone segment [start, end) covers the frames whose centre
``(j + 0.5) / 50`` lies inside it, or the nearest frame if none does, widened by ``TOLERANCE``
frames on each side to forgive 20 ms of timing):

- **viseme frame accuracy**: fraction of frames whose arg-max viseme equals the label.
- **confusion matrix**: ``C[true, predicted]`` frame counts, 15 × 15.
- **parameter MAE per group**: mean absolute error over frames and the group's parameters
  (mouth = ``arkit.MOUTH``, eyes = ``arkit.EYES``), in weight units [0, 1].
- **lip gap** of a frame: ``max(jawOpen − mouthClose, 0) + ¼ (mouthLowerDownLeft +
  mouthLowerDownRight + mouthUpperUpLeft + mouthUpperUpRight)`` — ARKit's mouthClose closes
  the lips against jawOpen; lowerDown/upperUp pull them apart. Lips are *closed* when the lip
  gap ≤ ``CLOSED`` (0.1).
- **bilabial closure recall**: over P/B/M segments where the teacher's lips close (its minimum
  lip gap in the segment window ≤ CLOSED), the fraction where the prediction's minimum lip gap
  in the same window is ≤ CLOSED too.
- **rounding recall**: over UW/OW/W segments where the teacher rounds (its peak of
  ``max(mouthFunnel, mouthPucker)`` in the window ≥ ``ROUNDED`` = 0.1), the fraction where the
  prediction's peak rounding reaches at least half the teacher's peak.
- **open-vowel openness**: over AA/AE/AH/AO/AW/AY/EH segments where the teacher opens the jaw
  (peak jawOpen ≥ ``OPEN`` = 0.1), the fraction where the prediction's peak jawOpen reaches at
  least half the teacher's peak *and* its peak lip gap is above CLOSED (the mouth stays open).
- **false closure rate**: over the frames where the teacher's lips are clearly open (lip gap >
  2 × CLOSED), the fraction where the prediction's are closed (lip gap ≤ CLOSED). The three
  recalls above count only misses; this counts the closures a P/B/M offset adds where none
  belongs (lower is better).
"""

from __future__ import annotations

import numpy as np

from audio2anim import arkit
from audio2anim.visemes import N_VISEMES

FRAME_RATE = 50.0
TOLERANCE = 1
CLOSED = 0.1
ROUNDED = 0.1
OPEN = 0.1
NAMES = arkit.MOUTH + arkit.EYES
_IX = {n: i for i, n in enumerate(NAMES)}


def frame_accuracy(pred_ids: np.ndarray, true_ids: np.ndarray) -> float:
    pred_ids, true_ids = np.asarray(pred_ids), np.asarray(true_ids)
    return float((pred_ids == true_ids).mean()) if len(true_ids) else float("nan")


def frame_accuracy_within(pred_ids: np.ndarray, true_ids: np.ndarray, frames: int) -> float:
    """Fraction of frames whose prediction equals the label of some frame within ±``frames``:
    frame accuracy that forgives a boundary placed up to ``frames`` frames off (forced-aligned
    labels put boundaries tens of ms from where a synthesizer put them)."""
    pred_ids, true_ids = np.asarray(pred_ids), np.asarray(true_ids)
    if not len(true_ids):
        return float("nan")
    padded = np.pad(true_ids, frames, mode="edge")
    n = len(true_ids)
    hit = np.zeros(n, bool)
    for shift in range(2 * frames + 1):
        hit |= pred_ids == padded[shift : shift + n]
    return float(hit.mean())


def confusion_matrix(pred_ids: np.ndarray, true_ids: np.ndarray, n: int = N_VISEMES) -> np.ndarray:
    """C[true, predicted] counts."""
    c = np.zeros((n, n), np.int64)
    np.add.at(c, (np.asarray(true_ids), np.asarray(pred_ids)), 1)
    return c


def mae_per_group(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """pred/target [T, 30] (MOUTH then EYES) → {"mouth": MAE, "eyes": MAE, "all": MAE}."""
    err = np.abs(np.asarray(pred) - np.asarray(target))
    m = len(arkit.MOUTH)
    return {
        "mouth": float(err[:, :m].mean()),
        "eyes": float(err[:, m:].mean()),
        "all": float(err.mean()),
    }


def lip_gap(p):
    """[..., 30] parameters → [...] lip gap (see the module docstring). numpy or torch: the
    training loss weights frames with it too."""
    pull = 0.25 * (
        p[..., _IX["mouthLowerDownLeft"]]
        + p[..., _IX["mouthLowerDownRight"]]
        + p[..., _IX["mouthUpperUpLeft"]]
        + p[..., _IX["mouthUpperUpRight"]]
    )
    return (p[..., _IX["jawOpen"]] - p[..., _IX["mouthClose"]]).clip(min=0.0) + pull


def rounding(p):
    """[..., 30] parameters → [...] max(mouthFunnel, mouthPucker) (numpy or torch)."""
    funnel, pucker = p[..., _IX["mouthFunnel"]], p[..., _IX["mouthPucker"]]
    return funnel + (pucker - funnel).clip(min=0.0)


def segment_frames(start: float, end: float, n_frames: int) -> slice:
    """The frame window of a segment (see the module docstring)."""
    lo = int(np.ceil(start * FRAME_RATE - 0.5))
    hi = int(np.ceil(end * FRAME_RATE - 0.5))  # exclusive
    if hi <= lo:
        lo = min(max(int(round((start + end) / 2 * FRAME_RATE - 0.5)), 0), max(n_frames - 1, 0))
        hi = lo + 1
    return slice(max(0, lo - TOLERANCE), min(n_frames, hi + TOLERANCE))


class LipSyncCounter:
    """Accumulates the lip-sync figures over utterances."""

    def __init__(self) -> None:
        self.counts = {k: [0, 0] for k in ("bilabial", "rounded", "open")}  # [hits, total]
        self.open_frames = [0, 0]  # [closed by the prediction, open in the target]

    def add(self, pred, target, seg_start, seg_end, seg_class) -> None:
        """pred/target [T, 30]; segments with class codes 1 bilabial, 2 rounded, 3 open."""
        n = min(len(pred), len(target))
        if n == 0:
            return
        pred, target = np.asarray(pred[:n]), np.asarray(target[:n])
        gp, gt = lip_gap(pred), lip_gap(target)
        rp, rt = rounding(pred), rounding(target)
        jp, jt = pred[:, _IX["jawOpen"]], target[:, _IX["jawOpen"]]
        open_ = gt > 2 * CLOSED
        self.open_frames[0] += int((gp[open_] <= CLOSED).sum())
        self.open_frames[1] += int(open_.sum())
        for s, e, c in zip(seg_start, seg_end, seg_class, strict=True):
            w = segment_frames(float(s), float(e), n)
            if w.start >= w.stop:
                continue
            if c == 1 and gt[w].min() <= CLOSED:
                self._count("bilabial", gp[w].min() <= CLOSED)
            elif c == 2 and rt[w].max() >= ROUNDED:
                self._count("rounded", rp[w].max() >= 0.5 * rt[w].max())
            elif c == 3 and jt[w].max() >= OPEN:
                self._count("open", jp[w].max() >= 0.5 * jt[w].max() and gp[w].max() > CLOSED)

    def _count(self, key: str, hit: bool) -> None:
        self.counts[key][0] += int(bool(hit))
        self.counts[key][1] += 1

    def result(self) -> dict:
        def ratio(counts):
            hits, total = counts
            return hits / total if total else float("nan")

        return {
            "bilabial_closure_recall": ratio(self.counts["bilabial"]),
            "rounding_recall": ratio(self.counts["rounded"]),
            "open_vowel_openness": ratio(self.counts["open"]),
            "false_closure_rate": ratio(self.open_frames),
            "segments": {k: v[1] for k, v in self.counts.items()},
            "open_frames": self.open_frames[1],
        }


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def ctc_greedy(ids: np.ndarray, blank: int = 0) -> list[int]:
    """Collapse repeats and drop blanks (and silence id 1) of a frame-wise arg-max."""
    out, last = [], None
    for i in np.asarray(ids).tolist():
        if i != last and i not in (blank, 1):
            out.append(i)
        last = i
    return out
