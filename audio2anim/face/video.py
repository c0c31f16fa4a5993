"""MP4 writing: rendered frames and audio into an H.264 + AAC file, placed by media time.

`VideoWriter` writes progressively through PyAV; frames and audio may arrive in any order and
block sizes, audio gaps are filled with silence and overlaps trimmed. Used by ``audio2anim
render`` and by the ``sink.video`` operator.

A file is written under a temporary name beside it (``.NAME.PID.tmp``) and renamed when
`VideoWriter.close` has written the MP4 index, so the path holds a playable file or nothing
(a device such as ``/dev/null`` is written directly). A write error (a full disk, a file-size
limit) raises `VideoError` naming the file; the temporary file is removed and the encoder is
never used again. `VideoWriter.abort` drops an unfinished file.

Audio keeps its channels (mono, stereo, up to 6.1; more are mixed down to stereo) and its
rate when AAC takes it (`AAC_RATES`); another rate is resampled to the nearest AAC rate
(`aac_rate`), with soxr, streaming.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

MIN_SIZE, MAX_SIZE = 16, 4096  # frame side in pixels (H.264 level limits aside)
#: the sample rates of MPEG-4 AAC (FFmpeg's encoder takes these and no other)
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
#: channel count → the FFmpeg layout the AAC encoder takes
LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1"}


def aac_rate(rate: int) -> int:
    """``rate`` if AAC takes it, else the nearest rate it takes (the higher one on a tie)."""
    return min(AAC_RATES, key=lambda r: (abs(r - rate), -r))


class VideoError(OSError):
    """The MP4 cannot be written; one line naming the file."""


def check_size(size: int, option: str = "--size") -> None:
    """A frame side H.264 (yuv420p) takes: even, within `MIN_SIZE` … `MAX_SIZE`."""
    if size % 2 or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"{option} {size}: must be even, from {MIN_SIZE} to {MAX_SIZE}")


def check_writable(path: str | os.PathLike) -> None:
    """Raise `VideoError` unless ``path``'s folder can take a new file (made if missing)."""
    path = Path(path)
    if path.is_dir():
        raise VideoError(f"{path}: is a folder")
    if path.exists() and not path.is_file():
        if not os.access(path, os.W_OK):
            raise VideoError(f"{path}: not writable")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VideoError(f"{path}: cannot create folder {path.parent} ({e.strerror})") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise VideoError(f"{path}: folder {path.parent} is not writable")


class VideoWriter:
    """Progressive MP4 writer (H.264 + optional AAC), placing media by time.

    ``add_frames(images, t0, fps)`` and ``add_audio(samples, t0, rate)`` may come in any order
    and any block sizes; the streams are created when the first frame arrives and the audio
    decision is known (``with_audio``: True, False or None = decide at the first audio packet
    or after ``decide_after_s`` of buffered frames). ``close()`` finalizes the file.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | None = None,
        crf: int = 20,
        preset: str = "veryfast",
        audio_bitrate: int = 96_000,
        with_audio: bool | None = None,
        decide_after_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        self.fps = fps
        self.crf, self.preset, self.audio_bitrate = crf, preset, audio_bitrate
        self.with_audio = with_audio
        self.decide_after_s = decide_after_s
        self.container = None
        self.vstream = self.astream = None
        self._pending_frames: list[tuple[np.ndarray, float]] = []  # (image, time)
        self._pending_audio: list[tuple[np.ndarray, float]] = []
        self.audio_rate: int | None = None  # the rate audio comes at
        self.channels = 1
        self._resampler = None  # soxr stream to the AAC rate, when the input rate is not one
        self._resampled_t0: float | None = None  # the first resampled block's time
        self._resampled = 0  # samples out of the resampler
        self._audio_next = 0  # next audio sample index to write
        self._last_pts = -1
        self.frames_written = 0
        self.samples_written = 0
        self._target: Path | None = None  # the file being written (temporary name or the path)
        self.failed = False

    # --- input ---------------------------------------------------------------------------------
    def add_frames(self, images: np.ndarray, t0: float, fps: float) -> None:
        if self.fps is None:
            self.fps = float(fps)
        for i, img in enumerate(images):
            self._pending_frames.append((img, t0 + i / fps))
        if self.container is None:
            buffered = len(self._pending_frames) / self.fps
            if self.with_audio is None and buffered >= self.decide_after_s:
                self.with_audio = bool(self._pending_audio)
            if self.with_audio is not None:
                self._open()
        if self.container is not None:
            self._drain()

    def add_audio(self, samples: np.ndarray, t0: float, rate: int) -> None:
        """``samples``: ``[n]`` (mono) or ``[n, channels]`` at ``rate`` Hz, starting at ``t0``."""
        samples = np.asarray(samples, np.float32)
        samples = samples[:, None] if samples.ndim == 1 else samples
        if samples.shape[1] not in LAYOUTS:  # mix down: the encoder takes no such layout
            samples = np.stack([samples[:, 0::2].mean(1), samples[:, 1::2].mean(1)], axis=1)
        if self.audio_rate is None:
            self.audio_rate = int(rate)
            self.channels = samples.shape[1]
            out = aac_rate(self.audio_rate)
            if out != self.audio_rate:
                import soxr

                self._resampler = soxr.ResampleStream(
                    self.audio_rate, out, self.channels, dtype="float32"
                )
        elif rate != self.audio_rate:
            raise ValueError(f"{self.path}: audio rate changed from {self.audio_rate} to {rate}")
        elif samples.shape[1] != self.channels:
            raise ValueError(
                f"{self.path}: audio channels changed from {self.channels} to {samples.shape[1]}"
            )
        if self.with_audio is None:
            self.with_audio = True
        if self.with_audio is False:
            return
        if self._resampler is not None:  # resampled blocks follow each other from the first
            t0 = self._resampled_t0 = t0 if self._resampled_t0 is None else self._resampled_t0
            t0 += self._resampled / self.out_rate
            samples = self._resampler.resample_chunk(samples)
            self._resampled += len(samples)
        self._pending_audio.append((samples, t0))
        if self.container is None and self._pending_frames:
            self._open()
        if self.container is not None:
            self._drain()

    @property
    def out_rate(self) -> int | None:
        """The rate the audio is written at: the input's, or the nearest AAC rate."""
        return None if self.audio_rate is None else aac_rate(self.audio_rate)

    # --- output --------------------------------------------------------------------------------
    def _open(self) -> None:
        import av

        h, w = self._pending_frames[0][0].shape[:2]
        if h % 2 or w % 2:
            self._pending_frames.clear()  # nothing can be written; close() has nothing to do
            raise ValueError(f"{self.path}: frame size {w}x{h} must be even for H.264 (yuv420p)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        direct = self.path.exists() and not self.path.is_file()  # a device: no rename
        self._target = (
            self.path if direct else self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        )
        try:
            self.container = av.open(str(self._target), mode="w", format="mp4")
        except Exception as e:
            self._fail(e)
        rate = Fraction(self.fps).limit_denominator(1001)
        vs = self.container.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.time_base = 1 / rate
        vs.options = {"crf": str(self.crf), "preset": self.preset}
        self.vstream = vs
        if self.with_audio and self.audio_rate:
            a = self.container.add_stream("aac", rate=self.out_rate)
            a.layout = LAYOUTS[self.channels]
            a.bit_rate = self.audio_bitrate
            self.astream = a

    def _fail(self, e: BaseException) -> None:
        """A write error: drop the container (never touched again) and the temporary file."""
        self.failed = True
        self.container = None
        self._pending_frames.clear()
        self._pending_audio.clear()
        self._remove_temporary()
        msg = getattr(e, "strerror", None) or (str(e).splitlines() or [type(e).__name__])[0]
        raise VideoError(f"{self.path}: cannot write the video ({msg})") from None

    def _remove_temporary(self) -> None:
        if self._target is not None and self._target != self.path:
            self._target.unlink(missing_ok=True)

    def _drain(self) -> None:
        try:
            self._write_pending()
        except VideoError:
            raise
        except Exception as e:
            self._fail(e)

    def _write_pending(self) -> None:
        import av

        for img, t in self._pending_frames:
            pts = int(round(t * self.fps))
            if pts <= self._last_pts:  # two frames in one slot: keep the first
                continue
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = pts
            self.container.mux(self.vstream.encode(frame))
            self._last_pts = pts
            self.frames_written += 1
        self._pending_frames.clear()
        if self.astream is None:
            self._pending_audio.clear()
            return
        rate = self.out_rate
        for samples, t in self._pending_audio:
            start = int(round(t * rate))
            if start > self._audio_next:  # a gap: silence keeps later audio in place
                gap = np.zeros((start - self._audio_next, samples.shape[1]), np.float32)
                samples = np.concatenate([gap, samples])
            elif start < self._audio_next:  # overlap: already written
                samples = samples[self._audio_next - start :]
            if len(samples) == 0:
                continue
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples.T), format="fltp", layout=LAYOUTS[self.channels]
            )
            frame.sample_rate = rate
            frame.pts = self._audio_next
            frame.time_base = Fraction(1, rate)
            self.container.mux(self.astream.encode(frame))
            self._audio_next += len(samples)
            self.samples_written += len(samples)
        self._pending_audio.clear()

    def close(self) -> None:
        """Flush the encoders, write the MP4 index and rename the file into place; safe to call
        more than once. Nothing is written when no frame arrived."""
        if self.failed:
            return
        if self.container is None and self._pending_frames:
            if self.with_audio is None:
                self.with_audio = bool(self._pending_audio)
            self._open()
        if self.container is None:
            return
        if self._resampler is not None and self.astream is not None:
            t0 = (self._resampled_t0 or 0.0) + self._resampled / self.out_rate
            tail = self._resampler.resample_chunk(np.zeros((0, self.channels), np.float32), True)
            self._pending_audio.append((tail, t0))
        self._drain()
        try:
            self.container.mux(self.vstream.encode(None))
            if self.astream is not None:
                self.container.mux(self.astream.encode(None))
            self.container.close()
        except Exception as e:
            self._fail(e)
        self.container = None
        if self._target != self.path:
            if self.frames_written:
                os.replace(self._target, self.path)
            else:
                self._remove_temporary()

    def abort(self) -> None:
        """Drop the file being written (nothing is left at the path)."""
        container, self.container = self.container, None
        self.failed = True
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()
        self._remove_temporary()
