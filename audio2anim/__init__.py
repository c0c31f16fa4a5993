"""audio2anim: real-time speech to face animation."""

import os

# numpy's OpenBLAS keeps its worker threads spinning for 2^28 CPU cycles after every matrix
# product (its default OPENBLAS_THREAD_TIMEOUT, 28): in a run that does one every few dozen
# milliseconds a worker thread spins all along, taking the CPU that a second `animate` worker
# process or another stream would use. 10 (2^10 cycles): it sleeps at once. The threads and the
# results are unchanged. Read when OpenBLAS loads: it takes effect where this package is
# imported before numpy (the `audio2anim` command); a value already set is kept.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "10")

__all__ = ["Animator"]


def __getattr__(name: str):
    # ``from audio2anim import Animator`` without importing the graph runtime for other users
    if name == "Animator":
        from audio2anim.animate.api import Animator

        return Animator
    raise AttributeError(f"module 'audio2anim' has no attribute {name!r}")
