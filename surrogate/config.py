"""The declarative recipe of one FCNN member (architecture and training), kept free of TensorFlow.

Why apart from the network code: presets, manifests and the CLI need the recipe without paying for a
TensorFlow import (seconds) on every command.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: the fewest molecules per fold an ensemble trains on (each member validates on one fold); here, free of
#: TensorFlow, so that the campaign checks can say it without importing it
MIN_ROWS_PER_FOLD = 5


class ModelConfig(BaseModel):
    """Architecture and training recipe of one FCNN member."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden: tuple[int, ...] = Field((1024, 512), min_length=1)
    activation: str = "relu"
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    l2: float = Field(0.0, ge=0.0)
    initializer: Literal["random_normal", "he_normal", "glorot_uniform"] = "he_normal"
    learning_rate: float = Field(1e-3, gt=0.0)
    #: ``constant``; ``thesis``: constant for ``lr_hold_epochs`` then lr*exp(3*(hold-epoch)/(epochs-hold));
    #: ``cosine``: cosine decay to 1% over all steps.
    lr_schedule: Literal["constant", "thesis", "cosine"] = "cosine"
    lr_hold_epochs: int = Field(500, ge=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(30, ge=1)
    #: stop when validation loss has not improved for this many epochs (None: train all epochs)
    early_stopping_patience: int | None = Field(None, ge=1)
    label_scaling: Literal["minmax", "standard"] = "standard"
    #: ``log1p`` compresses fingerprint counts so that one ring repeated 12 times does not dominate
    input_transform: Literal["none", "log1p"] = "log1p"
    #: standardised descriptor columns are multiplied by this before entering the network: with Adam,
    #: an input's scale acts as a learning rate for its weights, and 14 descriptors at unit scale sit
    #: next to ~110 non-zero fingerprint counts per molecule
    descriptor_weight: float = Field(1.0, gt=0.0)
