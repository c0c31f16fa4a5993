"""Training configuration: the options of a run, the model hyper-parameter presets, and the
constants the recipes share.

`TrainOptions` is everything a run depends on (recorded in the sidecar); `HPARAMS` holds the
architecture presets (``full`` for the shipped checkpoints, ``tiny`` for tests), overridden per
run by ``TrainOptions.hparams`` (`hparams_of`); `check_options` refuses option combinations that
do not apply to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..models.wav2vec import WAV2VEC2_SIZES
from .data import PARAM_NAMES

OUT_DIM = len(PARAM_NAMES)

# model hyper-parameters: "full" for the shipped checkpoints, "tiny" for tests
HPARAMS: dict[str, dict[str, dict]] = {
    "full": {
        "viseme-frontend": dict(channels=128, hidden=128, conv_layers=2, kernel=3, lookahead=6),
        "wav2vec2": dict(chunk_frames=5, left_chunks=10),
        "viseme-mlp": dict(past=12, lookahead=3, hidden=256, layers=2),
        "viseme-cnn": dict(lookahead=3, channels=128, layers=4, kernel=5),
        "w2v-cnn": dict(lookahead=3, channels=128, layers=4, kernel=5),
        "w2v-ar": dict(lookahead=3, channels=128, layers=4, kernel=5, prev_frames=4),
        "w2v-attention": dict(
            lookahead=3, channels=128, layers=3, kernel=5, attn_layers=2, heads=4, attn_window=50
        ),
    },
    "tiny": {
        "viseme-frontend": dict(channels=16, hidden=16, conv_layers=1, kernel=3, lookahead=2),
        "wav2vec2": dict(chunk_frames=4, left_chunks=4, **WAV2VEC2_SIZES["tiny"]),
        "viseme-mlp": dict(past=4, lookahead=1, hidden=32, layers=2),
        "viseme-cnn": dict(lookahead=1, channels=16, layers=2, kernel=3),
        "w2v-cnn": dict(lookahead=1, channels=16, layers=2, kernel=3),
        "w2v-ar": dict(lookahead=1, channels=16, layers=2, kernel=3, prev_frames=2),
        "w2v-attention": dict(
            lookahead=1, channels=16, layers=2, kernel=3, attn_layers=1, heads=2, attn_window=8
        ),
    },
}
DEFAULT_LR = {"viseme-frontend": 2e-3, "wav2vec2": 1e-3}
# Predictor loss weight of the frames of each lip-sync segment class (none, bilabial, rounded,
# open; windows as `metrics.segment_frames`). A plain MSE regresses to the mean where the input is
# ambiguous (a short P/B/M the front end half-heard), which leaves the lips slightly open; the
# weights move that mean towards the shapes the lip-sync figures (and viewers) check.
LIPSYNC_WEIGHTS = (1.0, 6.0, 3.0, 2.0)
# w2v-ar scheduled sampling: fed-back fraction start → end (reached at half the run), passes,
# noise added to what is fed back, fraction of crops trained with no history at all
AR_SCHEDULE = {"start": 0.3, "end": 0.9, "passes": 2, "noise": 0.3, "prev_dropout": 0.5}


@dataclass
class TrainOptions:
    """Everything a training run depends on (recorded in the sidecar)."""

    model: str
    out: str
    device: str = "cpu"
    epochs: int = 40
    seed: int = 0
    steps_per_epoch: int = 100
    batch: int = 32
    crop_s: float = 4.0
    lr: float | None = None
    patience: int = 6
    max_minutes: float | None = None
    frontend: str | None = None
    w2v_feature: str | None = None  # w2v-*: "posteriors" or "hidden-N" (default: the checkpoint's)
    # w2v-*: learn from the features of augmented audio (gain, EQ, noise: `augment_audio`), as
    # the viseme predictors learn from the front end's posteriors of it
    w2v_augment: bool = False
    # viseme-*: "onehot" (blurred true visemes), "frontend" (the viseme front end's posteriors
    # of the training audio), "mixed" (half of each); "auto" = mixed when --frontend is given
    viseme_input: str = "auto"
    # viseme-*: the front end's posteriors of the training audio, softened per crop by a random
    # temperature in this range (argmax kept, the runner-up nearer it): on voices it never heard,
    # the front end is that unsure, and a predictor trained on near one-hots ignores a P/B/M
    # posterior of 0.3; (1, 1) leaves them as they are
    posterior_temperature: tuple[float, float] = (1.0, 1.0)
    # front ends: speed perturbation by a random factor in [1 - s, 1 + s] per batch (tempo,
    # pitch and formants together: a cheap stand-in for more speakers); 0 turns it off
    speed_perturb: float = 0.1
    # viseme front end: vocal tract length perturbation, each crop's spectrum stretched by a
    # random factor in [1 - v, 1 + v] (formants move, tempo does not); 0 turns it off
    vtlp: float = 0.0
    # viseme front end: SpecAugment-style masks on the log-mel input (2 bands of ≤ 8 mels and
    # 2 spans of ≤ 4 frames per crop, set to the band means)
    spec_augment: bool = False
    # front ends: the range of the random gain (dB) and of the random EQ (± dB) of
    # `augment_audio`
    gain_db: tuple[float, float] = (-12.0, 6.0)
    eq_db: float = 6.0
    # front ends: the fraction of training crops put in a random room (`add_reverb`); 0: none
    reverb: float = 0.0
    # viseme front end: weight its frame loss by LIPSYNC_WEIGHTS too (P/B/M, rounded and open
    # frames count more), as the predictors' losses always are
    lipsync_frontend: bool = False
    # viseme front end: also learn the mean posteriors of these trained front ends (knowledge
    # distillation: an ensemble's accuracy in one network); the loss is the mean of the label
    # cross-entropy and the cross-entropy against their posteriors
    distill_from: tuple[str, ...] = ()
    # how often crops come from each training voice, relative to its share of the audio: voice
    # name ("festival:ked") or engine ("espeak") → weight; a full name wins over its engine
    voice_weights: dict = field(default_factory=dict)
    size: str = "full"
    split_seed: int | None = None  # the split by voice; None: ``seed`` (runs before this option)
    val_max_utts: int = 200
    command: str = ""
    hparams: dict = field(default_factory=dict)  # overrides of HPARAMS[size][model]

    @property
    def data_split_seed(self) -> int:
        """The seed of the split by voice: ``split_seed``, or ``seed`` when that is unset."""
        return self.seed if self.split_seed is None else self.split_seed


def hparams_of(opts: TrainOptions) -> dict:
    """The model's hyper-parameters: the ``opts.size`` preset with ``opts.hparams`` over it."""
    hp = dict(HPARAMS[opts.size][opts.model])
    hp.update(opts.hparams)
    return hp


def check_options(opts: TrainOptions) -> None:
    """Raise ValueError naming an unknown model or size, or an option the model does not take
    or a value out of its range."""
    from audio2anim.models.checkpoint import MODELS

    if opts.model not in MODELS:
        raise ValueError(f"unknown model {opts.model!r} (known: {', '.join(MODELS)})")
    if opts.size not in HPARAMS:
        raise ValueError(f"unknown size {opts.size!r} (known: {', '.join(HPARAMS)})")
    if opts.w2v_augment and not opts.model.startswith("w2v-"):
        raise ValueError("--w2v-augment is for the w2v-* predictors")
    if (opts.vtlp or opts.spec_augment) and opts.model != "viseme-frontend":
        raise ValueError("--vtlp and --spec-augment act on log-mel input: viseme-frontend only")
    lo, hi = opts.gain_db
    if not -60 <= lo <= hi <= 40:
        raise ValueError(f"--gain-db must be LO:HI with -60 <= LO <= HI <= 40, got {lo}:{hi}")
    lo, hi = opts.posterior_temperature
    if not 0.2 <= lo <= hi <= 10:
        raise ValueError(
            f"--posterior-temperature must be LO:HI with 0.2 <= LO <= HI <= 10, got {lo}:{hi}"
        )
    if (lo, hi) != (1.0, 1.0) and opts.model not in ("viseme-mlp", "viseme-cnn"):
        raise ValueError("--posterior-temperature softens viseme posteriors: viseme-mlp/-cnn only")
    if (lo, hi) != (1.0, 1.0) and (not opts.frontend or opts.viseme_input == "onehot"):
        raise ValueError("--posterior-temperature softens the posteriors of --frontend: give one")
    if not 0 <= opts.reverb <= 1:
        raise ValueError(f"--reverb must be a fraction in [0, 1], got {opts.reverb}")
    if opts.reverb and opts.model not in ("viseme-frontend", "wav2vec2"):
        raise ValueError(
            "--reverb augments the front ends' training audio: viseme-frontend, wav2vec2"
        )
    if not 0 <= opts.eq_db <= 24:
        raise ValueError(f"--eq-db must be in [0, 24], got {opts.eq_db}")
    if not 0 <= opts.vtlp < 0.5:
        raise ValueError(f"--vtlp must be in [0, 0.5), got {opts.vtlp}")
