"""The Python API: load a method graph once, animate many clips in one process.

    from audio2anim import Animator

    animator = Animator()               # graphs/whisper_w2v_attention.yaml, shipped checkpoints
    anim = animator.animate("line01.wav")        # or animate(samples, rate=44100)
    anim.names, anim.times, anim.values          # ARKit names, seconds, [frames, names] weights
    anim.visemes                                 # [frames, 15] viseme posteriors (or None)
    write_outputs(anim, ["line01.json", "line01.tsv"])   # any format of `outputs`

`Animator.animate` runs the graph in this process, as ``audio2anim animate`` does: the graph's
``src`` node reads the file (``source.file``) or the array (``source.array``), its live sinks
are dropped, and a ``sink.memory`` node keeps the frames of the parameter node (``smooth``) and,
when the graph has one, of the node that outputs a `Visemes` stream (``feature.visemes`` in the
viseme graphs). The wav2vec graphs have no viseme stream: their animations carry no visemes,
so the formats that need them (Rhubarb cues, viseme CSV, viseme morph targets) are refused for
them with a one-line error.

The result is an `audio2anim.formats.animation.Animation` at the graph's frame rate (50 fps)
holding all 52 ARKit names in `audio2anim.arkit.ALL` order (those the model does not predict
are 0), then any other parameter the model predicts; ``metadata`` has ``source`` (the file, or
``<array>``), ``graph`` and ``model`` (the checkpoints the graph's nodes load).

Why repeated calls are cheap: what costs time in a run is operator set-up (loading the ONNX
Runtime sessions; on a machine's first run, exporting the checkpoints to ONNX with torch), not
the graph or the run itself. The exported
ONNX sessions are cached per process in the model library (`audio2anim.models.predictor_stream.
cached_onnx_model`, keyed by the checkpoint directory and its files' modification times; the
Whisper front end's in `audio2anim.models.whisper_onnx`, keyed by their export cache keys), so
every run builds fresh operators — with the runner's ordinary life cycle, no reset to get
right in each operator — and their set-up finds the models already loaded. The validated graph
is built once (with the viseme node found in the same pass); each call only swaps its source
node, which feeds the audio in 10 s blocks (`BLOCK_MS`). The calls share one event loop and
one set of run metrics, and the runner keeps its threads from one run to the next. ``Animator()`` does one warm-up run on
half a second of silence, so the first ``animate`` is as fast as the later ones; ``warm_up=
False`` skips it where only the total time counts (the ``animate`` command: the run costs more
than it saves there, as the first file pays the same set-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from audio2anim import arkit
from audio2anim.formats.animation import Animation

# the Whisper front end + viseme-cnn: the best viseme accuracy and lip closure on real speech
# of the shipped graphs (docs/performance.md#real-recorded-speech); offline only
DEFAULT_GRAPH = "graphs/whisper_w2v_attention.yaml"
MIN_SECONDS = 0.1  # shorter audio is refused: too little for one frame with context
KEEP = "keep"  # the sink.memory node
# audio blocks of 10 s (the sources' largest): every model call has a fixed cost, so 1 s blocks
# take about twice the CPU time of 10 s blocks on a long recording (bench/batch.py --minutes),
# and the streaming models give the same frames for any block size
BLOCK_MS = 10_000.0


class AnimateError(ValueError):
    """A clip that cannot be animated; the message is one line naming the file."""


class Animator:
    """A method graph loaded once; `animate` turns audio into an `Animation`.

    ``graph``: a graph file (default the best method on CPU); ``overrides``: ``NODE.PARAM=VALUE``
    strings as ``--set`` takes them; ``checkpoints``: a folder searched for the graph's
    checkpoints first (like ``$AUDIO2ANIM_CHECKPOINTS``). Graph errors raise
    `audio2anim.graph.errors.GraphError`.
    """

    def __init__(
        self,
        graph: str | os.PathLike = DEFAULT_GRAPH,
        overrides: Sequence[str] = (),
        checkpoints: str | os.PathLike | None = None,
        warm_up: bool = True,
    ) -> None:
        from audio2anim.graph.metrics import GraphMetrics
        from audio2anim.sources.file import SHIPPED_SPEECH
        from audio2anim.streams import Visemes

        from .graph_edit import offline_graph

        if checkpoints is not None:
            from audio2anim.resources import set_checkpoint_folder

            set_checkpoint_folder(Path(checkpoints))
        self.graph_file = Path(graph)
        self.overrides = tuple(overrides)
        inputs = [("smooth", "in"), (Visemes, "visemes")]  # the node that outputs visemes, if any
        self._graph = offline_graph(
            graph, SHIPPED_SPEECH, {KEEP: ("sink.memory", {}, inputs)}, overrides=self.overrides
        )
        into_keep = {e.dst_port: e.src for e in self._graph.in_edges(KEEP)}
        self.viseme_node = into_keep.get("visemes")
        self.model = " + ".join(
            str(v)
            for node in self._graph.nodes.values()
            for k, v in node.params.model_dump().items()
            if k in ("checkpoint", "model") and isinstance(v, str | Path)
        )
        self.text_visemes = None  # the last call's aligned visemes (`text.TextVisemes`), if used
        # one event loop and one set of run metrics for every call (`_run_sync`, `_run`)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_pid = 0
        self._loop_lock = threading.Lock()  # held by the call running on the loop
        self._metrics = GraphMetrics()
        if warm_up:
            self.animate(np.zeros(8000, np.float32), rate=16000)

    # -- the public calls -----------------------------------------------------------------

    def animate(
        self,
        audio: str | os.PathLike | np.ndarray,
        rate: int | None = None,
        progress: Callable[[float], None] | None = None,
        text: str | None = None,
        *,
        refine: bool = True,
    ) -> Animation:
        """``audio`` (a file path, or samples ``[n]`` / ``[n, channels]`` at ``rate`` Hz) →
        `Animation`. ``progress(seconds)`` is called now and then with the seconds animated.

        ``text``: the words said; the visemes then follow their forced alignment to the audio
        (`audio2anim.animate.text`), and ``metadata["visemes"]`` is ``"text"``. Where the text
        cannot be used (alignment fails, the words do not fit the audio) the visemes are
        recognized from the audio as without it, ``metadata["visemes"]`` is ``"audio"``,
        ``metadata["text_warning"]`` says why in one line naming the file, and a
        `TextAlignmentWarning` is issued with that line. ``refine`` (text only): move the
        aligned viseme boundaries, up to ±120 ms, to where the recognizer hears them; False
        keeps pocketsphinx's.

        Raises `AnimateError` (one line naming the file) for a missing, unreadable, empty or
        too short (< 0.1 s) clip or one with NaN samples, for a ``text`` without words, and for
        ``text`` with a graph that has no viseme front end.
        """
        return self._run_sync(self.animate_async(audio, rate, progress, text, refine=refine))

    def close(self) -> None:
        """Close the event loop that `animate` runs on (a later call opens a new one)."""
        loop, self._loop = self._loop, None
        if (
            loop is not None and self._loop_pid == os.getpid()
            and not loop.is_closed() and not loop.is_running()
        ):  # fmt: skip
            loop.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    async def animate_async(
        self,
        audio: str | os.PathLike | np.ndarray,
        rate: int | None = None,
        progress: Callable[[float], None] | None = None,
        text: str | None = None,
        *,
        refine: bool = True,
    ) -> Animation:
        """`animate` for a caller that already runs an event loop."""
        graph, source = self._graph_for(audio, rate)
        if text is not None:
            from .text import DialogError, check_words, with_text

            if self.viseme_node is None:
                raise AnimateError(
                    f"{source}: text needs a graph with a viseme front end (feature.visemes); "
                    f"{self.graph_file} has none"
                )
            try:
                check_words(text)
            except DialogError:
                raise AnimateError(f"{source}: the transcript has no words") from None
            return await with_text(self, graph, source, audio, rate, text, progress, refine)
        return await self._run(graph, source, progress)

    async def _run(self, graph, source: str, progress=None) -> Animation:
        from audio2anim.graph.errors import OperatorError
        from audio2anim.graph.runner import Runner

        runner = Runner(graph, self._metrics)
        task = asyncio.ensure_future(runner.run())
        while not task.done():
            await asyncio.wait({task}, timeout=0.25)
            if progress is not None:
                try:
                    sink = runner.operator(KEEP)
                except KeyError:  # not built yet
                    continue
                progress(sink.rows / 50.0)
        try:
            task.result()
        except OperatorError as e:
            raise AnimateError(f"{source}: {e}") from None
        return self._animation(runner.operator(KEEP), source)

    # -- internals ------------------------------------------------------------------------

    def _run_sync(self, coro):
        """``coro`` run to its end on this Animator's event loop, as `asyncio.run` would, but
        with one loop for every call (a process forked from this one opens its own; a call
        made while another thread's runs gets a loop of its own, as with `asyncio.run`)."""
        if self._loop is None or self._loop.is_closed() or self._loop_pid != os.getpid():
            self._loop, self._loop_pid = asyncio.new_event_loop(), os.getpid()
        loop = self._loop
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # none: the caller is not a coroutine
            pass
        else:
            coro.close()
            raise RuntimeError("Animator.animate cannot run in an event loop; use animate_async")
        if not self._loop_lock.acquire(blocking=False):  # another thread's call is on the loop
            return asyncio.run(coro)
        try:
            task = loop.create_task(coro)
            try:
                return loop.run_until_complete(task)
            except BaseException:
                if not task.done():  # interrupted (Ctrl-C): the run is cancelled, operators closed
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        loop.run_until_complete(task)
                raise
        finally:
            self._loop_lock.release()

    def _graph_for(self, audio, rate):
        from audio2anim.graph.spec import Node

        src = self._graph.nodes["src"]
        if isinstance(audio, np.ndarray):
            from audio2anim.sources.array import ArraySource, ArraySourceParams

            source = "<array>"
            if rate is None:
                raise AnimateError("<array>: give the sample rate (rate=...) of numpy audio")
            try:
                params = ArraySourceParams(samples=audio, rate=rate, block_ms=BLOCK_MS)
            except Exception as e:
                raise AnimateError(f"<array>: {_first_error(e)}") from None
            _check_length(source, len(params.samples), rate)
            node = Node("src", ArraySource, params)
        else:
            source = str(audio)
            if rate is not None:
                raise AnimateError(f"{source}: rate applies to numpy audio, not to files")
            path = Path(audio)
            if not path.is_file():
                raise AnimateError(f"{source}: no such file")
            import soundfile as sf

            try:
                info = sf.info(str(path))
            except Exception as e:  # libsndfile's message says what is wrong with the file
                msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise AnimateError(f"{source}: not a readable audio file ({msg})") from None
            _check_length(source, info.frames, info.samplerate)
            params = type(src.params)(path=path, block_ms=BLOCK_MS, realtime=False)
            node = Node("src", src.op_class, params)
        nodes = dict(self._graph.nodes)
        nodes["src"] = node
        return dataclasses.replace(self._graph, nodes=nodes), source

    def _animation(self, sink, source: str) -> Animation:
        frames = sink.params_frames
        if not frames:
            raise AnimateError(f"{source}: the graph produced no frames")
        names = tuple(frames[0][1].names)
        fps = float(frames[0][1].frame_rate)
        start = float(frames[0][0])
        raw = np.concatenate([p.values for _, p in frames], axis=0).astype(np.float32)
        extras = tuple(n for n in names if n not in arkit.ALL)
        all_names = tuple(arkit.ALL) + extras
        values = np.zeros((len(raw), len(all_names)), np.float32)
        index = {n: i for i, n in enumerate(all_names)}
        values[:, [index[n] for n in names]] = raw
        visemes = None
        if sink.viseme_frames:
            probs = np.concatenate([v.probs for _, v in sink.viseme_frames], axis=0)
            v0 = float(sink.viseme_frames[0][0])
            vrate = float(sink.viseme_frames[0][1].frame_rate)
            times = start + np.arange(len(values)) / fps
            k = np.clip(np.floor((times - v0) * vrate + 1e-6).astype(int), 0, len(probs) - 1)
            visemes = np.clip(probs[k], 0.0, None)
        return Animation(
            fps=fps,
            names=all_names,
            values=values,
            visemes=visemes,
            start=start,
            metadata={"source": source, "graph": str(self.graph_file), "model": self.model},
        )


def _check_length(source: str, frames: int, rate: int) -> None:
    if frames == 0:
        raise AnimateError(f"{source}: empty (no samples)")
    seconds = frames / rate
    if seconds < MIN_SECONDS:
        raise AnimateError(f"{source}: too short ({seconds:.3f} s; at least {MIN_SECONDS} s)")


def _first_error(e: Exception) -> str:
    errors = getattr(e, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first.get("msg", e)).removeprefix("Value error, ")
    return str(e).splitlines()[0]


def audio_seconds(path: str | os.PathLike) -> float:
    """The duration of an audio file in seconds (NaN when libsndfile cannot read it)."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:
        return math.nan
    return info.frames / info.samplerate


__all__ = ["DEFAULT_GRAPH", "MIN_SECONDS", "AnimateError", "Animator", "audio_seconds"]
