"""The bundled OCELOT chromophore IE/EA dataset (see SOURCES.md beside this file for origin and terms).

Shipped inside the package so that a user with only the wheel still has the surrogate's prior data.
"""

from importlib import resources
from pathlib import Path

OCELOT_CSV = "ocelot_chromophore_v1_ie_ea.csv"


def bundled_path(name: str = OCELOT_CSV) -> Path:
    """Filesystem path of a bundled data file (works for editable and wheel installs alike)."""
    return Path(str(resources.files(__name__).joinpath(name)))
