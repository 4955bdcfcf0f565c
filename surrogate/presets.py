"""Named surrogate recipes: featuriser settings plus network config.

``thesis`` is the seed recipe of the thesis (data/SOURCES.md) this project grows from, reproduced exactly (it
needs hours per fold at its full 5000 epochs). ``fast`` is labloop's default: the most accurate recipe found that
trains a 5-fold ensemble on the bundled data within 10 minutes on 2 cores (see bench/RESULTS.md for the
numbers, and for what did not help: a wider network, radius 3, dropout 0.25, Huber loss, auxiliary
vertical IE/EA and HOMO/LUMO targets, bfloat16, weight averaging of the last epochs). What did help, on
a single network: atom pairs and torsions after ECFP (-9% MAE) and the Hückel descriptors (a further
-10%); on the 5-member ensemble, feeding those descriptors at 6x their standardised scale (-4% MAE on
both targets; 3x gave -2.5% / -3.6%).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from labloop.core.errors import InvalidInput
from labloop.surrogate.config import ModelConfig
from labloop.surrogate.featurize import FingerprintSettings


@dataclass(frozen=True)
class Preset:
    """A complete recipe: how to featurise and how to train."""

    name: str
    fingerprint: FingerprintSettings
    model: ModelConfig


PRESETS: dict[str, Preset] = {
    "thesis": Preset(
        "thesis",
        FingerprintSettings(radius=1, n_bits=2048, counts=False),
        ModelConfig(hidden=(1024, 512, 256), activation="relu", dropout=0.2, l2=0.003,
                    initializer="random_normal", learning_rate=0.003, lr_schedule="thesis",
                    lr_hold_epochs=500, batch_size=30000, epochs=5000, early_stopping_patience=None,
                    label_scaling="minmax", input_transform="none"),
    ),
    "fast": Preset(
        "fast",
        FingerprintSettings(radius=2, n_bits=2048, counts=True, atom_pair_bits=1024, torsion_bits=1024,
                            descriptors=True),
        ModelConfig(hidden=(512, 256), activation="relu", dropout=0.05, l2=0.0, initializer="he_normal",
                    learning_rate=1e-3, lr_schedule="cosine", batch_size=128, epochs=40,
                    early_stopping_patience=None, label_scaling="standard", input_transform="log1p",
                    descriptor_weight=6.0),
    ),
}


def get_preset(name: str, *, epochs: int | None = None) -> Preset:
    """The preset called ``name``, with its epochs overridden when ``epochs`` is given (quick runs, a
    campaign's ``surrogate.epochs``); an unknown name lists the valid ones."""
    try:
        preset = PRESETS[name]
    except KeyError:
        raise InvalidInput(f"unknown preset {name!r}; choose one of: {', '.join(sorted(PRESETS))}") from None
    if epochs is None:
        return preset
    return replace(preset, model=preset.model.model_copy(update={"epochs": epochs}))
