"""MultiHeadAttention on [batch, steps, features] tensors, through the kit's attention.

Keras projects with EinsumDense kernels [features, heads, head_dim] (output: [heads, head_dim,
out]), scales the query by 1/sqrt(key_dim), and masks with an additive -1e9 where
`attention_mask` is 0 (so a fully masked row averages instead of giving NaN).
"""
from __future__ import annotations

import math

import numpy as np

from neo.ir import Value

from ..common.decompose import attention, merge_heads, split_heads
from .context import LayerContext
from .registry import converter

_LARGE_NEGATIVE = -1e9


@converter("MultiHeadAttention", ignore=("dropout", "seed", "query_shape", "key_shape",
                                         "value_shape", "softmax_robust_masking",
                                         "flash_attention"))
def MultiHeadAttention(cx: LayerContext, query: Value, value: Value, key: Value | None = None,
                       attention_mask: Value | None = None, query_mask: Value | None = None,
                       value_mask: Value | None = None, key_mask: Value | None = None, *,
                       num_heads, key_dim, value_dim=None, use_bias=True, output_shape=None,
                       attention_axes=None, use_gate=False, sliding_window=None,
                       return_attention_scores=False, use_causal_mask=False):
    if any(m is not None for m in (query_mask, value_mask, key_mask)):
        cx.unsupported("query/value/key masks (Keras masking); pass attention_mask")
    if use_gate:
        cx.unsupported_attribute("use_gate", use_gate, "False")
    if sliding_window is not None:
        cx.unsupported_attribute("sliding_window", sliding_window, "None")
    key = value if key is None else key
    for v in (query, key, value):
        if v.type.rank != 3:
            cx.unsupported(f"attention over a rank-{v.type.rank} input (supported: [batch, "
                           "steps, features])")
    if attention_axes is not None and [int(a) % 3 for a in np.atleast_1d(attention_axes)] != [1]:
        cx.unsupported_attribute("attention_axes", attention_axes, "None or [1]")
    heads, dk = int(num_heads), int(key_dim)
    dv = int(value_dim) if value_dim is not None else dk
    names = ["query_kernel", "query_bias", "key_kernel", "key_bias", "value_kernel", "value_bias",
             "output_kernel", "output_bias"]
    if not use_bias:
        names = names[0::2]
    ws = cx.expect_weights(names)
    if not use_bias:
        ws = [w for pair in zip(ws, [None] * 4) for w in pair]
    qk, qb, kk, kb, vk, vb, ok, ob = ws
    t = query.shape[1]

    def project(x: Value, kernel: np.ndarray, bias, width: int, what: str) -> Value:
        if kernel.shape != (x.shape[-1], heads, width):
            cx.invalid(f"{what} kernel", list(kernel.shape), f"[{x.shape[-1]}, {heads}, {width}]")
        y = cx.op("matmul", x, cx.weight(kernel.reshape(x.shape[-1], heads * width)))
        if bias is not None:
            y = cx.op("add", y, cx.weight(bias.reshape(heads * width)))
        return split_heads(cx, y, heads)  # [batch, heads, steps, width]

    q = project(query, qk, qb, dk, "query")
    k = project(key, kk, kb, dk, "key")
    v = project(value, vk, vb, dv, "value")
    s = key.shape[1]
    bias = None
    if attention_mask is not None:
        m = cx.cast(attention_mask, "float32")
        if m.type.rank == 3:
            m = cx.reshape(m, (m.shape[0], 1, *m.shape[1:]))
        bias = cx.binary("mul", cx.binary("sub", 1.0, m), _LARGE_NEGATIVE)
    if use_causal_mask:
        causal = np.where(np.arange(s)[None, :] > np.arange(t)[:, None], _LARGE_NEGATIVE, 0.0)
        c = cx.const(causal.astype(np.float32))
        bias = c if bias is None else cx.op("add", bias, c)
    out, probs, _, _ = attention(cx, cx.binary("mul", q, 1.0 / math.sqrt(dk)), k, v, bias=bias,
                                 scale=1.0)
    merged = merge_heads(cx, out)  # [batch, steps, heads * dv]
    out_dims = tuple(ok.shape[2:])
    if len(out_dims) != 1 or ok.shape[:2] != (heads, dv):
        cx.unsupported(f"an output kernel of shape {list(ok.shape)} (supported: "
                       f"[{heads}, {dv}, features])")
    y = cx.op("matmul", merged, cx.weight(ok.reshape(heads * dv, out_dims[0])))
    if ob is not None:
        y = cx.op("add", y, cx.weight(ob))
    return [y, probs] if return_attention_scores else y
