"""DualTalker: speech-driven 3D facial animation with lip reading as the dual task.

Networks (plain ``nn.Module``s), losses (``compute_losses`` forms L = L_rec + E (lambda_dual
L_dual + lambda_cons L_cons)) and the LVE/FDD metrics; the LightningModule is ``module.py``.
"""

from .audio_encoder import AudioEncoder, AudioEncoderError, load_wav2vec
from .lip_reader import CharVocab, LipReader
from .losses import compute_losses
from .metrics import (
    PAPER_UNITS,
    LipVertexError,
    UpperFaceDynamicsDeviation,
    condition_indices,
    face_metrics,
)
from .motion import MotionDecoder, MotionEncoder, PeriodicPositionalEncoding, periodic_alibi_bias
from .network import DualTalker, DualTalkerOptions, DualTalkerOutput

__all__ = [
    "PAPER_UNITS",
    "AudioEncoder",
    "AudioEncoderError",
    "CharVocab",
    "DualTalker",
    "DualTalkerOptions",
    "DualTalkerOutput",
    "LipReader",
    "LipVertexError",
    "MotionDecoder",
    "MotionEncoder",
    "PeriodicPositionalEncoding",
    "UpperFaceDynamicsDeviation",
    "compute_losses",
    "condition_indices",
    "face_metrics",
    "load_wav2vec",
    "periodic_alibi_bias",
]
