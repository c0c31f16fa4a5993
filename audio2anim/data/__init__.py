"""Training data: corpora of speech with phone timings, and the datasets made from them.

- `tts`: text-to-speech engines behind one interface and the voice registry (``engine:voice``);
- `synth`: the synthetic corpus built with them (``audio2anim data synth``), `sentences` its
  generated text, `augment` its audio augmentations;
- `realspeech`: real recordings (Asterisk prompts, PyPI speech) and their downloads;
- `espeak_ng`: espeak-ng's C library (speech with phone times, pronunciations);
- `align` and `g2p`: forced alignment of recordings to transcripts;
- `corpus`: the corpus format; `livelink`: Live Link Face takes into a corpus;
- `teacher`: the procedural mouth/eyes teacher; `dataset`: the dataset steps;
- `cli`: the ``audio2anim data`` commands.
"""
