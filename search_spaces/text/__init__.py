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
    canonical_op_set,
    shipped_architectures,
)
from search_spaces.text.encodings import (
    from_nni_json,
    from_official_string,
    load_any,
    nni_key_layout,
    official_string_length,
    to_nni_json,
    to_official_string,
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
    "canonical_op_set",
    "shipped_architectures",
    "from_nni_json",
    "from_official_string",
    "load_any",
    "nni_key_layout",
    "official_string_length",
    "to_nni_json",
    "to_official_string",
    "TextNASClassifier",
    "TextNASEncoder",
    "TextNASOptions",
    "count_parameters",
    "RandomStrategy",
    "TextNASSupernet",
]
