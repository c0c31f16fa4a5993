"""Parameter tracks (+ audio) → an MP4: the rendering loop of ``audio2anim render`` and of
``audio2anim animate --video``.

    writer = render_clip("take.mp4", values, names, fps=30, audio=samples, audio_rate=44100)

``values`` ``[frames, len(names)]`` are ARKit weights at ``fps``; frame ``k`` is rendered at
``k / fps``. ``audio`` (``[n]`` or ``[n, channels]`` at ``audio_rate``) is muxed as it is: its
channels and rate (the nearest AAC rate when AAC does not take it; `audio2anim.face.video`).
Frames are rendered one second at a time, each block's audio handed over with it; ``stopped()``
is asked before each block, and when it says so the frames rendered so far (and their audio)
are finalized into a playable, shorter file. Any exception
(a second signal's abort among them) drops the unfinished file. A write error raises
`audio2anim.face.video.VideoError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from .video import VideoWriter


def render_clip(
    path: str | os.PathLike,
    values: np.ndarray,
    names: Sequence[str],
    fps: float,
    *,
    audio: np.ndarray | None = None,
    audio_rate: int | None = None,
    size: int = 512,
    rig=None,
    background: tuple[float, float, float] | None = None,
    msaa: int = 1,
    stopped: Callable[[], bool] = lambda: False,
    progress: Callable[[int], None] | None = None,
) -> VideoWriter:
    """Render and write the clip → the closed `VideoWriter` (``frames_written`` says how many
    frames the file has; 0 and no file when stopped before the first). ``rig``: a `Rig`, a
    GLB path, or None for the packaged face."""
    from .renderer import Renderer

    writer = VideoWriter(path, fps=fps, with_audio=audio is not None)
    done = 0  # audio samples handed to the writer: the audio follows the frames rendered

    def audio_until(seconds: float) -> None:
        nonlocal done
        if audio is None:
            return
        end = len(audio) if seconds == float("inf") else int(round(seconds * audio_rate))
        end = min(len(audio), end)
        if end > done:
            writer.add_audio(audio[done:end], done / audio_rate, int(audio_rate))
            done = end

    try:
        extra = {} if background is None else {"background": background}
        with Renderer(rig, size, msaa=msaa, **extra) as renderer:
            chunk = max(1, int(round(fps)))
            for start in range(0, len(values), chunk):
                if stopped():
                    break
                block = values[start : start + chunk]
                audio_until((start + len(block)) / fps)
                writer.add_frames(renderer.render_sequence(block, names), start / fps, fps)
                if progress is not None:
                    progress(len(block))
            else:
                audio_until(float("inf"))  # all rendered: the audio to its end
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer
