"""TextNAS search space (plain PyTorch; no Lightning)."""

from search_spaces.text.architecture import (
    ARCHITECTURES_DIR,
    OP_ALIASES,
    OP_NAMES,
    STEM,
    Architecture,
    ArchitectureError,
    LayerSpec,
    canonical_op,
    nni_key_layout,
    official_string_length,
    shipped_architectures,
    space_size_log10,
)
from search_spaces.text.network import (
    TextNASClassifier,
    TextNASEncoder,
    TextNASOptions,
    count_parameters,
)
from search_spaces.text.strategies import RandomStrategy
from search_spaces.text.supernet import TextNASSupernet

__all__ = [
    "ARCHITECTURES_DIR",
    "OP_ALIASES",
    "OP_NAMES",
    "STEM",
    "Architecture",
    "ArchitectureError",
    "LayerSpec",
    "canonical_op",
    "nni_key_layout",
    "official_string_length",
    "shipped_architectures",
    "space_size_log10",
    "TextNASClassifier",
    "TextNASEncoder",
    "TextNASOptions",
    "count_parameters",
    "RandomStrategy",
    "TextNASSupernet",
]
