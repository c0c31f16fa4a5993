"""Real English speech for training and evaluation: Asterisk's prompts (`asterisk`), test and
documentation recordings from PyPI sdists (`pypi_speech`), and the pinned, sha256-checked
downloads they use (`download`)."""
