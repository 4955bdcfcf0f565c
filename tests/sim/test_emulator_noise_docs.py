"""docs/drivers.md tells plug-in emulator authors how to draw noise so a resumed dry run reproduces the
uninterrupted one (per measurement, from the seed and how often that measurement was made), pointing at the
built-in emulator that does it. The newcomer's emulator drew from one generator made at start, so a resume
measured other noise; the docs said nothing. This holds the paragraph to the code it names."""

from __future__ import annotations

import re
from pathlib import Path

from labloop.core import seeds
from labloop.sim import emstat_emulator

ROOT = Path(__file__).resolve().parents[2]


def test_drivers_md_says_how_an_emulator_draws_reproducible_noise_and_names_real_code() -> None:
    text = " ".join((ROOT / "docs" / "drivers.md").read_text().split())
    [paragraph] = [p for p in re.split(r"(?= - )", text) if p.startswith(" - Noise")]
    assert "stable_rng(seed, count, key)" in paragraph and "resumed dry run" in paragraph
    assert "`sim/emstat_emulator.py` `_noise_rng`" in paragraph
    assert callable(seeds.stable_rng) and callable(emstat_emulator.EmStatEmulator._noise_rng)
