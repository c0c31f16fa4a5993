"""Training, evaluation and combination of the models.

- `data`: training-data exports of a corpus; `synthetic`: a synthetic export for tests;
- `config`: run options and hyper-parameter presets; `batching`: device tensors and crops;
  `augmentation`: audio and spectrum augmentation; `targets`: target and input shaping;
  `features`: front-end features for predictors and their cache; `loop`: the training loop;
- `recipes`: the recipes of the seven models and `train`;
- `evaluate` and `metrics`: test figures; `combine`: ensembles of front ends;
- `random_checkpoints`: untrained checkpoints for tests and timing;
- `cli`: ``audio2anim train``, ``eval``, ``combine-frontends``, ``export-onnx``.
"""
