"""Rhubarb Lip Sync-compatible mouth cues: TSV, JSON, XML and Moho/OpenToonz ``.dat``.

Rhubarb Lip Sync animates a 2D mouth with six basic shapes and three optional extended ones:

    A  closed mouth (P, B, M)             D  wide open (AA as in father)
    B  slightly open, clenched teeth       E  rounded (AO, ER)
       (most consonants, EE)               F  puckered (UW, OW, W)
    C  open (EH, AE)                       G  upper teeth on lower lip (F, V)   [extended]
                                           H  tongue raised (L)                [extended]
                                           X  idle / rest                      [extended]

Mapping from the 15 Oculus visemes (and the ``jawOpen`` weight where it splits open vowels):

    viseme  phones              shape
    sil     silence             X
    PP      P B M               A
    FF      F V                 G
    TH      TH DH               B
    DD      T D                 B
    kk      K G HH              B
    CH      CH JH SH ZH         B
    SS      S Z                 B
    nn      N NG L              B   (L shares the nn viseme, so H is never produced)
    RR      R ER                E
    aa      AA AH AE AY AW      D, or C when jawOpen < 0.3
    E       EH EY               C, or D when jawOpen >= 0.5
    ih      IH IY Y             B
    oh      AO OW OY            E
    ou      UW UH W             F

Every frame gets the shape with the largest summed posterior over the visemes that map to it
(without ``jawOpen`` among the parameters, aa is D and E is C). Shapes missing from
``extended_shapes`` become their basic shape as Rhubarb converts them: G → A, H → C, X → A.

Cues: consecutive frames with the same shape form one cue; cue boundaries are media times
rounded to centiseconds (Rhubarb's resolution), the end of the last cue (the duration) truncated
to centiseconds as Rhubarb truncates it; a cue shorter than ``min_cue`` seconds (default
0.02 s: one frame at 50 fps) is absorbed by the cue before it (the first one by the cue after
it), and neighbours that then share a shape are merged. Time before the animation's first frame
is idle (X). The cue list always starts at 0.00. No in-between shapes are inserted (Rhubarb adds
a C or E tween between some pairs, such as D → B): the cues follow the visemes frame by frame.

Layouts, as Rhubarb Lip Sync 1.14 writes them (times with two decimals):

- TSV: ``start<TAB>shape`` per cue, then a final line with the end time and the closed mouth
  (X, or A without extended X).
- JSON: ``metadata`` (``soundFile``: absolute path, ``duration``) and ``mouthCues`` with one
  ``{ "start": s, "end": e, "value": "S" }`` per line; characters outside ASCII written as
  ``\\uXXXX`` (UTF-16 code units).
- XML: ``rhubarbResult`` with ``metadata`` (``soundFile``: absolute path, ``duration``) and
  ``mouthCues`` of ``<mouthCue start=".." end="..">S</mouthCue>``, two-space indent, and the
  five XML entities escaped (``& < > " '``).
- DAT (Moho switch data, read by Moho and OpenToonz): ``MohoSwitch1``, then ``frame shape`` per
  cue with 1-based frame numbers ``1 + int(rate * start)`` at ``dat_frame_rate`` (24–100 fps,
  default 24; a cue starting on the frame of the previous line is left out), then the closed
  mouth on the end frame (one past the last line's frame if they coincide). ``preston_blair``
  writes the Preston Blair names (MBP, etc, E, AI, O, U, FV, L, rest) that OpenToonz needs.

JSON and XML write a single zero-length X cue for an empty animation.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from audio2anim.formats.animation import Animation, write_atomic
from audio2anim.visemes import VISEMES

SHAPES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F", "G", "H", "X")
BASIC_SHAPES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F")
EXTENDED_SHAPES = "GHX"
BASIC_SHAPE: dict[str, str] = {"G": "A", "H": "C", "X": "A"}
PRESTON_BLAIR: dict[str, str] = {
    "A": "MBP", "B": "etc", "C": "E", "D": "AI", "E": "O", "F": "U", "G": "FV", "H": "L",
    "X": "rest",
}  # fmt: skip
FORMATS: tuple[str, ...] = ("tsv", "json", "xml", "dat")

#: The shape of every viseme; aa and E are split by ``jawOpen`` (see the module docstring).
VISEME_SHAPE: dict[str, str] = {
    "sil": "X", "PP": "A", "FF": "G", "TH": "B", "DD": "B", "kk": "B", "CH": "B", "SS": "B",
    "nn": "B", "RR": "E", "aa": "D", "E": "C", "ih": "B", "oh": "E", "ou": "F",
}  # fmt: skip
AA_C_BELOW = 0.3  # aa is C (open) below this jawOpen, D (wide open) from it
E_D_FROM = 0.5  # E is D (wide open) from this jawOpen, C below
MIN_CUE = 0.02


@dataclass(frozen=True)
class MouthCue:
    """One mouth shape from ``start`` to ``end`` (seconds, multiples of 0.01)."""

    start: float
    end: float
    value: str


def _shapes_set(extended_shapes: str) -> str:
    ext = "".join(dict.fromkeys(extended_shapes.upper()))
    bad = [c for c in ext if c not in "GHX"]
    if bad:
        raise ValueError(f"extended_shapes may contain only G, H and X, got {extended_shapes!r}")
    return ext


def _to_target(shape: str, ext: str) -> str:
    return shape if shape in BASIC_SHAPES or shape in ext else BASIC_SHAPE[shape]


def frame_shapes(animation: Animation, extended_shapes: str = EXTENDED_SHAPES) -> list[str]:
    """The mouth shape of every frame of ``animation`` (needs its viseme posteriors)."""
    ext = _shapes_set(extended_shapes)
    if animation.visemes is None:
        raise ValueError("Rhubarb mouth cues need viseme posteriors; this animation has none")
    post = animation.visemes.astype(np.float64)
    n = len(post)
    jaw = animation.column("jawOpen")
    aa_shape = np.full(n, "D", dtype="<U1")
    e_shape = np.full(n, "C", dtype="<U1")
    if jaw is not None:
        aa_shape[jaw < AA_C_BELOW] = "C"
        e_shape[jaw >= E_D_FROM] = "D"
    index = {s: i for i, s in enumerate(SHAPES)}
    scores = np.zeros((n, len(SHAPES)))
    rows = np.arange(n)
    for v, name in enumerate(VISEMES):
        if name == "aa":
            np.add.at(scores, (rows, [index[s] for s in aa_shape]), post[:, v])
        elif name == "E":
            np.add.at(scores, (rows, [index[s] for s in e_shape]), post[:, v])
        else:
            scores[:, index[VISEME_SHAPE[name]]] += post[:, v]
    best = scores.argmax(axis=1)
    return [_to_target(SHAPES[i], ext) for i in best]


def mouth_cues(
    animation: Animation, extended_shapes: str = EXTENDED_SHAPES, min_cue: float = MIN_CUE
) -> list[MouthCue]:
    """Rhubarb mouth cues for ``animation``, from 0.00 to its end (see the module docstring)."""
    ext = _shapes_set(extended_shapes)
    if not (math.isfinite(min_cue) and min_cue >= 0):
        raise ValueError(f"min_cue must be a non-negative number of seconds, got {min_cue}")
    shapes = frame_shapes(animation, ext)
    idle = _to_target("X", ext)
    # runs of equal shapes, boundaries in centiseconds of media time
    runs: list[list] = []  # [start_cs, end_cs, shape]
    start_cs = _cs(animation.start)
    if start_cs > 0:
        runs.append([0, start_cs, idle])
    for k, shape in enumerate(shapes):
        t0 = max(0, _cs(animation.start + k / animation.fps))
        t1 = max(0, _cs(animation.start + (k + 1) / animation.fps))
        if runs and runs[-1][2] == shape:
            runs[-1][1] = t1
        else:
            if runs:
                runs[-1][1] = t0
            runs.append([t0, t1, shape])
    end_cs = max(0, int(math.floor(animation.end * 100.0 + 1e-6)))
    for r in runs:
        r[0], r[1] = min(r[0], end_cs), min(r[1], end_cs)
    min_cs = min_cue * 100.0 - 1e-9
    kept: list[list] = []
    carry: int | None = None  # start of short cues before the first kept one
    for a, b, shape in runs:
        if carry is not None:
            a, carry = carry, None
        if b - a < min_cs:
            if kept:
                kept[-1][1] = b
            else:
                carry = a
            continue
        if kept and kept[-1][2] == shape:
            kept[-1][1] = b
        else:
            kept.append([a, b, shape])
    if carry is not None:
        kept.append([carry, runs[-1][1], runs[-1][2]])
    runs = kept
    return [MouthCue(a / 100.0, b / 100.0, s) for a, b, s in runs if b >= a]


def _cs(seconds: float) -> int:
    return int(math.floor(seconds * 100.0 + 0.5 + 1e-9))


_XML_QUOTES = {'"': "&quot;", "'": "&apos;"}


def _absolute(sound_file: str | os.PathLike) -> str:
    path = os.fspath(sound_file)
    return os.path.abspath(path) if path else ""


def _fmt(seconds: float) -> str:
    return f"{seconds:.2f}"


def _end(cues: Sequence[MouthCue]) -> float:
    return cues[-1].end if cues else 0.0


def format_tsv(cues: Sequence[MouthCue], extended_shapes: str = EXTENDED_SHAPES) -> str:
    """Rhubarb's TSV: one ``start<TAB>shape`` line per cue, then the end with a closed mouth."""
    idle = _to_target("X", _shapes_set(extended_shapes))
    lines = [f"{_fmt(c.start)}\t{c.value}" for c in cues]
    lines.append(f"{_fmt(_end(cues))}\t{idle}")
    return "\n".join(lines) + "\n"


def _nonempty(cues: Sequence[MouthCue], extended_shapes: str) -> list[MouthCue]:
    if cues:
        return list(cues)
    return [MouthCue(0.0, 0.0, _to_target("X", _shapes_set(extended_shapes)))]


def format_json(
    cues: Sequence[MouthCue], sound_file: str | os.PathLike = "",
    extended_shapes: str = EXTENDED_SHAPES,
) -> str:  # fmt: skip
    """Rhubarb's JSON: metadata (absolute ``soundFile``, ``duration``) and ``mouthCues``."""
    sound = _absolute(sound_file)
    out = [
        "{",
        '  "metadata": {',
        f'    "soundFile": {json.dumps(sound)},',
        f'    "duration": {_fmt(_end(cues))}',
        "  },",
        '  "mouthCues": [',
    ]
    items = [
        f'    {{ "start": {_fmt(c.start)}, "end": {_fmt(c.end)}, "value": "{c.value}" }}'
        for c in _nonempty(cues, extended_shapes)
    ]
    out.append(",\n".join(items))
    out += ["  ]", "}"]
    return "\n".join(out) + "\n"


def format_xml(
    cues: Sequence[MouthCue], sound_file: str | os.PathLike = "",
    extended_shapes: str = EXTENDED_SHAPES,
) -> str:  # fmt: skip
    """Rhubarb's XML: ``rhubarbResult`` with ``metadata`` and ``mouthCues``."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<rhubarbResult>",
        "  <metadata>",
        f"    <soundFile>{escape(_absolute(sound_file), _XML_QUOTES)}</soundFile>",
        f"    <duration>{_fmt(_end(cues))}</duration>",
        "  </metadata>",
        "  <mouthCues>",
    ]
    out += [
        f'    <mouthCue start="{_fmt(c.start)}" end="{_fmt(c.end)}">{c.value}</mouthCue>'
        for c in _nonempty(cues, extended_shapes)
    ]
    out += ["  </mouthCues>", "</rhubarbResult>"]
    return "\n".join(out) + "\n"


def _check_rate(frame_rate: float) -> float:
    rate = float(frame_rate)
    if not (24.0 <= rate <= 100.0):
        raise ValueError(f"dat frame rate must be between 24 and 100 fps, got {frame_rate}")
    return rate


def format_dat(
    cues: Sequence[MouthCue],
    frame_rate: float = 24.0,
    extended_shapes: str = EXTENDED_SHAPES,
    preston_blair: bool = False,
) -> str:
    """Moho switch data (``MohoSwitch1``) with 1-based frame numbers at ``frame_rate``."""
    rate = _check_rate(frame_rate)
    idle = _to_target("X", _shapes_set(extended_shapes))

    def name(shape: str) -> str:
        return PRESTON_BLAIR[shape] if preston_blair else shape

    def frame(t: float) -> int:
        return 1 + int(rate * t + 1e-9)

    lines = ["MohoSwitch1"]
    last = 0
    for c in cues:
        f = frame(c.start)
        if f == last:
            continue
        lines.append(f"{f} {name(c.value)}")
        last = f
    f = frame(_end(cues))
    if f == last:
        f += 1
    lines.append(f"{f} {name(idle)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- readers


def _check_shape(value: str, where: str) -> str:
    if value not in SHAPES:
        raise ValueError(f"{where}: unknown mouth shape {value!r}")
    return value


def parse_tsv(text: str, where: str = "TSV") -> list[MouthCue]:
    """Cues from Rhubarb TSV text (the final line gives the end of the last cue)."""
    rows: list[tuple[float, str]] = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            raise ValueError(f"{where} line {i}: expected 'time<TAB>shape', got {line!r}")
        try:
            t = float(parts[0])
        except ValueError:
            raise ValueError(f"{where} line {i}: bad time {parts[0]!r}") from None
        rows.append((t, _check_shape(parts[1].strip(), f"{where} line {i}")))
    if not rows:
        raise ValueError(f"{where}: no mouth cues")
    return [MouthCue(rows[i][0], rows[i + 1][0], rows[i][1]) for i in range(len(rows) - 1)]


def parse_json(text: str, where: str = "JSON") -> tuple[list[MouthCue], dict]:
    """Cues and metadata from Rhubarb JSON text."""
    try:
        doc = json.loads(text)
        cues = [
            MouthCue(float(c["start"]), float(c["end"]), _check_shape(str(c["value"]), where))
            for c in doc["mouthCues"]
        ]
        return cues, dict(doc.get("metadata", {}))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{where}: not Rhubarb JSON ({type(e).__name__}: {e})") from None


def parse_xml(text: str, where: str = "XML") -> tuple[list[MouthCue], dict]:
    """Cues and metadata (``soundFile``, ``duration``) from Rhubarb XML text."""
    try:
        root = ET.fromstring(text.encode("utf-8"))
        if root.tag != "rhubarbResult":
            raise ValueError(f"root element is {root.tag!r}")
        meta = {
            "soundFile": root.findtext("metadata/soundFile", default=""),
            "duration": float(root.findtext("metadata/duration", default="0")),
        }
        cues = [
            MouthCue(float(e.get("start")), float(e.get("end")),
                     _check_shape((e.text or "").strip(), where))
            for e in root.findall("mouthCues/mouthCue")
        ]  # fmt: skip
        return cues, meta
    except (ET.ParseError, TypeError, ValueError) as e:
        raise ValueError(f"{where}: not Rhubarb XML ({e})") from None


def parse_dat(text: str, frame_rate: float = 24.0, where: str = "DAT") -> list[MouthCue]:
    """Cues from Moho switch data; times are ``(frame - 1) / frame_rate``.

    Preston Blair names are read back as the letters they stand for.
    """
    rate = _check_rate(frame_rate)
    from_pb = {v: k for k, v in PRESTON_BLAIR.items()}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != "MohoSwitch1":
        raise ValueError(f"{where}: missing the MohoSwitch1 header")
    rows: list[tuple[int, str]] = []
    for i, line in enumerate(lines[1:], 2):
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{where} line {i}: expected 'frame shape', got {line!r}")
        value = parts[1] if parts[1] in SHAPES else from_pb.get(parts[1], parts[1])
        rows.append((int(parts[0]), _check_shape(value, f"{where} line {i}")))
    if not rows:
        raise ValueError(f"{where}: no mouth cues")
    return [
        MouthCue((rows[i][0] - 1) / rate, (rows[i + 1][0] - 1) / rate, rows[i][1])
        for i in range(len(rows) - 1)
    ]


# ---------------------------------------------------------------- files


def format_cues(
    cues: Sequence[MouthCue],
    fmt: str,
    sound_file: str | os.PathLike = "",
    extended_shapes: str = EXTENDED_SHAPES,
    dat_frame_rate: float = 24.0,
    dat_preston_blair: bool = False,
) -> str:
    """``cues`` in Rhubarb format ``fmt`` (``tsv``, ``json``, ``xml`` or ``dat``)."""
    if fmt == "tsv":
        return format_tsv(cues, extended_shapes)
    if fmt == "json":
        return format_json(cues, sound_file, extended_shapes)
    if fmt == "xml":
        return format_xml(cues, sound_file, extended_shapes)
    if fmt == "dat":
        return format_dat(cues, dat_frame_rate, extended_shapes, dat_preston_blair)
    raise ValueError(f"unknown Rhubarb format {fmt!r} (one of {', '.join(FORMATS)})")


def format_for(path: str | os.PathLike) -> str:
    """The Rhubarb format named by a file's extension."""
    ext = Path(path).suffix.lower().lstrip(".")
    if ext not in FORMATS:
        raise ValueError(f"{path}: no Rhubarb format for extension {ext!r} (tsv, json, xml, dat)")
    return ext


def write_rhubarb(
    path: str | os.PathLike,
    animation: Animation,
    fmt: str | None = None,
    sound_file: str | os.PathLike | None = None,
    extended_shapes: str = EXTENDED_SHAPES,
    dat_frame_rate: float = 24.0,
    dat_preston_blair: bool = False,
    min_cue: float = MIN_CUE,
) -> list[MouthCue]:
    """Write ``animation``'s mouth cues to ``path`` (format from ``fmt`` or the extension).

    ``sound_file`` defaults to ``animation.metadata["source"]``. The file is written under a
    temporary name and renamed when complete. Returns the cues written.
    """
    fmt = fmt or format_for(path)
    if sound_file is None:
        sound_file = str(animation.metadata.get("source", "") or "")
    cues = mouth_cues(animation, extended_shapes, min_cue)
    text = format_cues(cues, fmt, sound_file, extended_shapes, dat_frame_rate, dat_preston_blair)
    write_atomic(path, text)
    return cues


def read_rhubarb(
    path: str | os.PathLike, fmt: str | None = None, dat_frame_rate: float = 24.0
) -> list[MouthCue]:
    """The mouth cues of a Rhubarb file (format from ``fmt`` or the extension)."""
    fmt = fmt or format_for(path)
    text = Path(path).read_text(encoding="utf-8")
    where = str(path)
    if fmt == "tsv":
        return parse_tsv(text, where)
    if fmt == "json":
        return parse_json(text, where)[0]
    if fmt == "xml":
        return parse_xml(text, where)[0]
    if fmt == "dat":
        return parse_dat(text, dat_frame_rate, where)
    raise ValueError(f"unknown Rhubarb format {fmt!r} (one of {', '.join(FORMATS)})")


__all__ = [
    "BASIC_SHAPE", "EXTENDED_SHAPES", "FORMATS", "MIN_CUE", "PRESTON_BLAIR", "SHAPES",
    "VISEME_SHAPE", "MouthCue", "format_cues", "format_dat", "format_for",
    "format_json", "format_tsv", "format_xml", "frame_shapes", "mouth_cues", "parse_dat",
    "parse_json", "parse_tsv", "parse_xml", "read_rhubarb", "write_rhubarb",
]  # fmt: skip
