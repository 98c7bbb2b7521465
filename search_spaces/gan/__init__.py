"""alphaGAN generator search space (plain PyTorch; no Lightning).

Ops (:mod:`.ops`), mixed edges and the search cell (:mod:`.cell`), the supernet with its α
(:mod:`.supernet`), the genotype type and YAML format (:mod:`.genotype`) and the plain
generator of a genotype (:mod:`.generator`).  Shipped genotypes: ``alphagan_l``,
``alphagan_s`` (reference ``models/genotypes.py``).
"""

from search_spaces.gan.generator import Generator, init_weights
from search_spaces.gan.genotype import (
    ALPHA_SHAPES,
    EDGE_NAMES,
    GENOTYPES_DIR,
    SKIP_SOURCES,
    Genotype,
    GenotypeError,
    edge_ops,
    load_genotype,
    shipped_genotypes,
    space_size,
)
from search_spaces.gan.ops import NORMAL_OPS, UP_OPS
from search_spaces.gan.supernet import GeneratorSupernet, genotype_from_alphas, init_alphas

__all__ = [
    "ALPHA_SHAPES",
    "EDGE_NAMES",
    "GENOTYPES_DIR",
    "NORMAL_OPS",
    "SKIP_SOURCES",
    "UP_OPS",
    "Generator",
    "GeneratorSupernet",
    "Genotype",
    "GenotypeError",
    "edge_ops",
    "genotype_from_alphas",
    "init_alphas",
    "init_weights",
    "load_genotype",
    "shipped_genotypes",
    "space_size",
]
