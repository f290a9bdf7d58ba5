"""Converters: other models' masked attention onto softmask's op, so they export with one
SoftMaskedAttention node per attention call (docs/deploy-mask2former.md)."""

from softmask.convert.mask2former import (
    SUPPORTED_ARCHITECTURES,
    MaskedCrossAttention,
    convert_mask2former,
    export_mask2former,
)

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "MaskedCrossAttention",
    "convert_mask2former",
    "export_mask2former",
]
