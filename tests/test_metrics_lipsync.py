"""Lip-sync figures: the recalls count misses only; the false closure rate counts the closures
a prediction adds where the teacher's lips are open."""

import numpy as np
import pytest

from audio2anim.train.metrics import NAMES, LipSyncCounter

J, C = NAMES.index("jawOpen"), NAMES.index("mouthClose")


def speech(n_open: int = 40, n_closed: int = 10) -> tuple[np.ndarray, list, list, list]:
    """Params at 50 Hz: an open vowel (jaw 0.5), a closed P/B/M (jaw 0.2 against mouthClose
    0.2), the vowel again; with the segments of each."""
    p = np.zeros((2 * n_open + n_closed, len(NAMES)), np.float32)
    p[:, J] = 0.5
    p[n_open : n_open + n_closed, J] = p[n_open : n_open + n_closed, C] = 0.2
    edges = np.array([0, n_open, n_open + n_closed, 2 * n_open + n_closed]) / 50.0
    return p, list(edges[:-1]), list(edges[1:]), [3, 1, 3]  # open, bilabial, open


def figures(pred, target, starts, ends, classes) -> dict:
    counter = LipSyncCounter()
    counter.add(pred, target, starts, ends, classes)
    return counter.result()


def test_a_faithful_prediction_closes_on_the_bilabial_only():
    target, *segments = speech()
    r = figures(target, target, *segments)
    assert r["bilabial_closure_recall"] == 1.0 and r["open_vowel_openness"] == 1.0
    assert r["false_closure_rate"] == 0.0 and r["open_frames"] == 80


def test_closing_everywhere_keeps_closure_recall_but_shows_as_false_closures():
    target, *segments = speech()
    shut = target.copy()
    shut[:, C] = shut[:, J]  # lips closed on every frame
    r = figures(shut, target, *segments)
    assert r["bilabial_closure_recall"] == 1.0  # recall alone cannot see it
    assert r["false_closure_rate"] == 1.0 and r["open_vowel_openness"] == 0.0


def test_false_closure_rate_is_the_share_of_open_frames_closed():
    target, *segments = speech()
    pred = target.copy()
    pred[:20, C] = pred[:20, J]  # half of the first vowel: 20 of 80 open frames
    assert figures(pred, target, *segments)["false_closure_rate"] == pytest.approx(0.25)
