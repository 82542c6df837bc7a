"""What a training run is: its settings (TrainConfig) and the optimizer they define."""
from __future__ import annotations

import dataclasses
import functools

import optax


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings; README reports the validation accuracy the defaults reach."""

    model: str = "mnist_cnn"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 3e-3  # peak of a warmup + cosine schedule
    warmup_epochs: float = 1.0
    weight_decay: float = 0.0
    shift: int = 2  # random translation of up to this many pixels (augmentation)
    seed: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})

    def validate(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}")
        if self.shift < 0:
            raise ValueError(f"shift must be >= 0; got {self.shift}")


@functools.lru_cache(maxsize=16)  # the same object for the same config: the jitted step is reused
def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    total = max(config.epochs * steps_per_epoch, 2)
    warmup = min(max(int(config.warmup_epochs * steps_per_epoch), 1), total - 1)
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, warmup, total)
    return optax.adamw(schedule, weight_decay=config.weight_decay)
