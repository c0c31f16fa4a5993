"""One torch intra-op thread for the streaming model operators, unless the user asks for more.

The streaming models run small tensors (one packet of 20 ms to 1 s of frames) on worker threads,
several operators at once. Torch's default of one intra-op thread per core then costs more than
it gains: on this 2-core machine under load, the viseme front end ran 5–10× slower with 2
threads than with 1 (the threads spin waiting for each other). ``AUDIO2ANIM_TORCH_THREADS=N``
sets another count.

Torch's CPU thread count is an OpenMP setting of the *calling* thread, and the runner calls an
operator from whichever worker thread is free, so the operators call this at setup and on every
packet; after the first call on a thread it is one attribute lookup.
"""

from __future__ import annotations

import os
import threading

ENV = "AUDIO2ANIM_TORCH_THREADS"
_configured = threading.local()


def configure_torch_threads() -> None:
    """Set torch's intra-op thread count to ``$AUDIO2ANIM_TORCH_THREADS`` or 1 (this thread)."""
    if getattr(_configured, "done", False):
        return
    import torch

    raw = os.environ.get(ENV, "1")
    try:
        n = int(raw)
    except ValueError:
        raise ValueError(f"${ENV}: expected a thread count, got {raw!r}") from None
    if n >= 1 and torch.get_num_threads() != n:
        torch.set_num_threads(n)
    _configured.done = True
