"""audio2anim: real-time speech to face animation."""

__all__ = ["Animator"]


def __getattr__(name: str):
    # ``from audio2anim import Animator`` without importing the graph runtime for other users
    if name == "Animator":
        from audio2anim.animate.api import Animator

        return Animator
    raise AttributeError(f"module 'audio2anim' has no attribute {name!r}")
