"""The dual task, lip reading: motion -> speech content, through the shared motion encoder.

    offsets (B, T, V*3) -> shared MotionEncoder -> periodic PE -> bidirectional transformer
    encoder (symmetric periodic ALiBi bias, padded frames blocked)
      -> (a) Linear(d -> d): the shared audio encoder's frame features (regression target)
      -> (b) Linear(d -> characters) at ``ctc_upsample`` x the frame rate: CTC over characters
             when a transcript exists (SelfTalk's target, with real text instead of pseudo-labels)

DualTalker's own lip-reading decoder is unpublished (the form is this suite's choice:
docs/dualtalker.md, "The suite's choices"). The encoder reuses the decoder layer of ``motion.py``
without the cross-attention, as ``nn.TransformerEncoderLayer`` would.
"""

from __future__ import annotations

import torch
from torch import nn

from .motion import Attention, PeriodicPositionalEncoding, self_attention_bias


class CharVocab:
    """Characters for CTC: 0 = blank, then space, apostrophe and a-z (upper case folded)."""

    def __init__(self, alphabet: str = " 'abcdefghijklmnopqrstuvwxyz") -> None:
        self.alphabet = alphabet
        self.index = {c: i + 1 for i, c in enumerate(alphabet)}

    def __len__(self) -> int:
        return len(self.alphabet) + 1

    def encode(self, text: str) -> list[int]:
        """Known characters only (digits and punctuation are dropped), spaces collapsed."""
        ids = [self.index[c] for c in " ".join(text.lower().split()) if c in self.index]
        return ids

    def decode(self, ids) -> str:
        return "".join(self.alphabet[i - 1] for i in ids if 0 < i <= len(self.alphabet))

    def greedy(self, log_probs: torch.Tensor) -> str:
        """Best-path decoding of one (T, C) sequence: collapse repeats, drop blanks."""
        best = log_probs.argmax(-1).tolist()
        return self.decode([c for i, c in enumerate(best) if c and (i == 0 or c != best[i - 1])])

    def batch(self, texts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded (B, S) ids and (B,) lengths; an empty transcript has length 0."""
        encoded = [self.encode(t) for t in texts]
        width = max([len(e) for e in encoded] + [1])
        ids = torch.zeros(len(encoded), width, dtype=torch.long)
        for b, e in enumerate(encoded):
            ids[b, : len(e)] = torch.tensor(e, dtype=torch.long)
        return ids.to(device), torch.tensor([len(e) for e in encoded], device=device)


class EncoderLayer(nn.Module):
    """Post-norm self-attention layer: x = LN(x + SA(x)); x = LN(x + FFN(x))."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.attn = Attention(dim, num_heads, dropout)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, mask)))
        return self.norm2(x + self.drop(self.ffn(x)))


class LipReader(nn.Module):
    """Lip-reading head on the shared motion encoder's embeddings (the encoder is not owned
    here: the network passes its embeddings in, so both tasks train the same instance)."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        period: int,
        vocab_size: int | None,
        ctc_upsample: int,
    ) -> None:
        super().__init__()
        self.ppe = PeriodicPositionalEncoding(dim, period, dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.feature_head = nn.Linear(dim, dim)
        self.ctc_head = nn.Linear(dim, vocab_size) if vocab_size else None
        self.num_heads, self.period, self.ctc_upsample = num_heads, period, ctc_upsample

    def forward(self, embeddings: torch.Tensor, frame_mask: torch.Tensor, ctc: bool = True):
        """embeddings (B, T, d) of the motion encoder -> features (B, T, d) and CTC log-probs
        (B, u * T, C) or None."""
        mask = self_attention_bias(frame_mask, self.num_heads, self.period, causal=False)
        x = self.ppe(embeddings)
        for layer in self.layers:
            x = layer(x, mask)
        features = self.feature_head(x)
        if not ctc or self.ctc_head is None:
            return features, None
        upsampled = x.repeat_interleave(self.ctc_upsample, dim=1)
        return features, self.ctc_head(upsampled).log_softmax(-1)
