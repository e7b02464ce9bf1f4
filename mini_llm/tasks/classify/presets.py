"""Named sizes of the three review classifiers: ``tiny`` for tests, ``notebook`` for the live cells, ``book``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mini_llm.tasks.classify.finetune import FineTuneConfig
from mini_llm.tasks.classify.hf_bert import EncoderSize

MODELS = ("naive-bayes", "bert-hf", "mini-llm")


@dataclass(frozen=True)
class PretrainConfig:
    """Masked-language-model pre-training of mini_llm's encoder on People's Daily (chapter 2.3's recipe)."""

    steps: int = 2000  # optimisation steps
    batch_size: int = 32  # windows per step
    lr: float = 2e-3  # peak learning rate (warm-up, then cosine to lr / 10)
    warmup_steps: int = 100  # linear warm-up steps
    max_chars: int | None = None  # use only the first max_chars characters of the corpus (None: all)
    min_count: int = 5  # characters seen fewer times (corpus + training reviews) map to <unk>


@dataclass(frozen=True)
class ClassifyPreset:
    """Everything that decides a classifier run besides the model kind and the seed."""

    description: str  # one line: what the preset is for and how long it takes
    max_train: int | None = None  # use only the first max_train training reviews (None: all)
    nb_n_max: tuple[int, ...] = (1, 2, 3)  # naive Bayes: longest n-gram, chosen on the validation set
    nb_alpha: tuple[float, ...] = (0.1, 0.3, 1.0)  # naive Bayes: smoothing, chosen on the validation set
    size: EncoderSize = field(default_factory=EncoderSize)  # encoder size of both BERT classifiers
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)  # fine-tuning of both BERT classifiers
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)  # mini-llm only

    def as_dict(self) -> dict:
        """The preset as a JSON-ready dict."""
        return asdict(self)


PRESETS: dict[str, ClassifyPreset] = {
    "tiny": ClassifyPreset(
        description="for tests: 200 training reviews, a 1-layer 16-wide encoder, a few steps; seconds",
        max_train=200,
        nb_n_max=(1, 2),
        nb_alpha=(1.0,),
        size=EncoderSize(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
        finetune=FineTuneConfig(epochs=1, batch_size=50, max_length=32, eval_every=2, lr=1e-3),
        pretrain=PretrainConfig(steps=3, batch_size=4, max_chars=20_000, min_count=1),
    ),
    "notebook": ClassifyPreset(
        description="the live cells of notebooks/ch05_classify: 1 epoch, reviews cut to 62 characters; ~1 min",
        finetune=FineTuneConfig(epochs=1, max_length=64, eval_every=100, lr=2e-3),
        pretrain=PretrainConfig(steps=300),
    ),
    "book": ClassifyPreset(
        description="the results of chapter 5.4: 3 epochs, reviews cut to 126 characters; ~10 min per model",
        finetune=FineTuneConfig(epochs=3, max_length=128, eval_every=200, lr=1e-3),
        pretrain=PretrainConfig(steps=2000),
    ),
}


def get_preset(name: str) -> ClassifyPreset:
    """The preset called ``name``; ValueError listing the available ones otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def check_model(name: str) -> str:
    """``name`` if it is one of MODELS; ValueError listing them otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(MODELS)}")
    return name
