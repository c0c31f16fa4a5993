"""``audio2anim serve``: a WebSocket service streaming animation to many speakers at once."""
