"""Masked reductions over response tokens: the one place for means, variances, whitening and last-token placement.

``mask`` is ``(B, T)``: 1 (or True) on response tokens, 0 on prompt padding and on tokens after the end; the values
have the same shape. Every response is assumed to have at least one token.
"""
from __future__ import annotations

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``sum(x * m) / sum(m)`` over ``dim`` (all tokens when None); the count is clamped at 1, as TRL does, so an
    empty row gives 0 instead of NaN."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, *, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries of ``x`` (all tokens together); ``unbiased`` applies Bessel's ``n / (n - 1)``
    (TRL's and verl's ``masked_var`` default; OpenRLHF divides by ``n``)."""
    centered = x - masked_mean(x, mask)
    var = masked_mean(centered**2, mask)
    if unbiased:
        n = mask.to(x.dtype).sum()
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, *, unbiased: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` with the statistics of the masked entries, zero on padding.

    The defaults are verl's ``masked_whiten`` (and TRL's PPO): unbiased variance, ``eps = 1e-8`` inside the root.
    OpenRLHF's global advantage normalisation is ``unbiased=False`` (its ``var.clamp(min=1e-8).rsqrt()`` differs
    from ``var + 1e-8`` by at most 1e-8 in the variance).
    """
    whitened = (x - masked_mean(x, mask)) * torch.rsqrt(masked_var(x, mask, unbiased=unbiased) + eps)
    return whitened * mask.to(x.dtype)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` position of the last response token of each row (the EOS token, or the last one kept)."""
    return mask.shape[1] - 1 - mask.long().flip(1).argmax(1)


def at_last_token(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` zeros with ``values[b]`` at row b's last response token: an outcome reward as a token reward."""
    out = torch.zeros(mask.shape, dtype=values.dtype, device=values.device)
    return out.scatter(1, last_token_index(mask)[:, None], values[:, None])
