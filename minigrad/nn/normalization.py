"""LayerNorm (PyTorch's signature): normalise over the trailing ``normalized_shape`` axes."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from . import init
from .layers import _float_dtype
from .module import Module, Parameter

__all__ = ["LayerNorm"]


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the last ``len(normalized_shape)``
    axes; ``weight`` starts at 1 and ``bias`` at 0 (``elementwise_affine=False``: neither)."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, dtype=None):
        super().__init__()
        shape = (
            (normalized_shape,)
            if isinstance(normalized_shape, (int, np.integer))
            else tuple(normalized_shape)
        )
        if not shape or any(
            isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s <= 0 for s in shape
        ):
            raise ValueError(
                f"normalized_shape must be a positive int or a tuple of them, got "
                f"{normalized_shape!r}"
            )
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.normalized_shape = tuple(int(s) for s in shape)
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        dt = _float_dtype(dtype)
        if self.elementwise_affine:
            self.weight = Parameter(np.empty(self.normalized_shape, dtype=dt))
            if bias:
                self.bias = Parameter(np.empty(self.normalized_shape, dtype=dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )
