"""FID and IS for the alphaGAN systems, by the papers' protocol (``docs/alphagan.md``,
"Scoring"): uint8 conversion by truncation, torch-fidelity's TF-ported InceptionV3 with the
TF1-compatible resize, FID against fixed real statistics (TTUR's files or cached), IS in 10
contiguous splits with the population std. A seeded random-conv stand-in extractor serves CPU
runs and tests; its numbers are labelled ``standin`` and are not comparable to published FID.
"""

from .extractors import (
    EXTRACTORS,
    INCEPTION_FILE,
    FrozenExtractor,
    InceptionExtractor,
    StandinExtractor,
    build_extractor,
    check_extractor,
    to_uint8,
)
from .fid import FeatureMoments, FrechetDistance, frechet_distance
from .inception_score import InceptionScore, inception_score
from .real_stats import cache_key, feature_moments, load_fid_stats, real_statistics

__all__ = [
    "EXTRACTORS",
    "INCEPTION_FILE",
    "FeatureMoments",
    "FrechetDistance",
    "FrozenExtractor",
    "InceptionExtractor",
    "InceptionScore",
    "StandinExtractor",
    "build_extractor",
    "cache_key",
    "check_extractor",
    "feature_moments",
    "frechet_distance",
    "inception_score",
    "load_fid_stats",
    "real_statistics",
    "to_uint8",
]
