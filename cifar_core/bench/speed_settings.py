"""The speed benchmark's settings: how much work each measurement does, and the fine-tuning both paths compare."""

from __future__ import annotations

from dataclasses import dataclass

from cifar_core.config import TrainConfig


@dataclass
class BenchSizes:
    """How much work each measurement does; `quick()` and `full()` are the CLI's two settings."""

    synthetic_train: int = 50_000  # synthetic dataset size when no data folder is given
    synthetic_test: int = 10_000
    head_images: int = 45_000  # images in the head-epoch comparison (all of the train split)
    head_batch: int = 64  # TrainConfig's default batch size, the seed's
    finetune_batch: int = 128
    pretrain_images: int = 20_000  # the checkpoint both fine-tuning paths start from: a head trained on
    pretrain_epochs: int = 10  # cached features of this many images for this many epochs
    finetune_steps: int = 40  # steps each path takes from it (the first, tracing, is not timed)
    val_images: int = 5_000
    latency_calls: int = 200
    eval_images: int = 10_000
    rss_steps: int = 20

    @classmethod
    def quick(cls) -> "BenchSizes":
        return cls(head_images=1_280, pretrain_images=2_560, finetune_steps=6, val_images=1_000,
                   latency_calls=50, eval_images=2_000, rss_steps=4)

    @classmethod
    def full(cls) -> "BenchSizes":
        return cls()


def finetune_config(bf16: bool, batch_size: int) -> TrainConfig:
    """The seed's model and optimiser (VGG16, Flatten head, RMSprop), fine-tuned with every layer trainable."""
    return TrainConfig(weights="none", finetune_freeze="none", batch_size=batch_size, augment=False, bf16=bf16)
