"""audio2anim: real-time speech to face animation."""
