"""Converters for attention: scaled_dot_product_attention, the fused multi-head attention of
nn.MultiheadAttention's inference path, and the fused nn.TransformerEncoderLayer, all decomposed
into matmul, softmax, layer norm and elementwise ops."""
from __future__ import annotations

import math

import numpy as np

from neo.ir import Value

from .context import Missing, NodeContext
from .math import linear_
from .nn import layer_norm_
from .registry import converter


def _swap_last(cx: NodeContext, x: Value) -> Value:
    r = x.type.rank
    return cx.transpose(x, list(range(r - 2)) + [r - 1, r - 2])


def attention_(cx: NodeContext, q: Value, k: Value, v: Value, mask: Value | None,
               is_causal: bool, scale: float | None) -> tuple[Value, Value]:
    """softmax(q @ k^T * scale + mask) @ v; returns the output and the attention weights."""
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    scores = cx.op("matmul", q, _swap_last(cx, k))
    scores = cx.op("mul", scores, cx.scalar(s, scores.dtype))
    L, S = q.shape[-2], k.shape[-2]
    if is_causal:
        mask = cx.const(np.tril(np.ones((L, S), bool)))
    if mask is not None:
        if mask.dtype == "bool":  # True takes part
            scores = cx.op("where", mask, scores, cx.scalar(-np.inf, scores.dtype))
        else:
            scores = cx.op("add", scores, cx.cast(mask, scores.dtype))
    p = cx.op("softmax", scores, axis=scores.type.rank - 1)
    return cx.op("matmul", p, v), p


@converter("aten::scaled_dot_product_attention")
def scaled_dot_product_attention(cx: NodeContext, query: Value, key: Value, value: Value,
                                 attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False) -> Value:
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        cx.unsupported("grouped-query attention (enable_gqa with fewer key heads)")
    return attention_(cx, query, key, value, attn_mask, bool(is_causal), scale)[0]


def _heads(cx: NodeContext, x: Value, h: int) -> Value:
    """(B, L, E) -> (B, H, L, E/H)."""
    b, n, e = x.shape
    return cx.transpose(cx.reshape(x, (b, n, h, e // h)), (0, 2, 1, 3))


def multi_head_attention_(cx: NodeContext, query: Value, key: Value, value: Value, embed_dim: int,
                          num_head: int, qkv_weight: Value, qkv_bias: Value, proj_weight: Value,
                          proj_bias: Value, mask) -> tuple[Value, Value]:
    if mask is not None:
        cx.unsupported("masks in the fused multi-head attention (nn.MultiheadAttention's "
                       "inference fast path); trace with torch.no_grad() off, or without a mask")
    squeeze = query.type.rank == 2
    if squeeze:  # unbatched (L, E)
        query, key, value = (cx.reshape(t, (1,) + t.shape) for t in (query, key, value))
    e = int(embed_dim)
    if query is key and key is value:
        q, k, v = (cx.slice(linear_(cx, query, qkv_weight, qkv_bias), 2, i * e, (i + 1) * e)
                   for i in range(3))
    else:
        ws = [cx.slice(qkv_weight, 0, i * e, (i + 1) * e) for i in range(3)]
        bs = [cx.slice(qkv_bias, 0, i * e, (i + 1) * e) for i in range(3)]
        q, k, v = (linear_(cx, t, w, b) for t, w, b in zip((query, key, value), ws, bs))
    h = int(num_head)
    o, p = attention_(cx, _heads(cx, q, h), _heads(cx, k, h), _heads(cx, v, h), None, False, None)
    b, n = query.shape[:2]
    o = cx.reshape(cx.transpose(o, (0, 2, 1, 3)), (b, n, e))
    out = linear_(cx, o, proj_weight, proj_bias)
    if squeeze:
        out = cx.reshape(out, out.shape[1:])
    return out, p


@converter("aten::_native_multi_head_attention")
def _native_multi_head_attention(cx: NodeContext, query: Value, key: Value, value: Value,
                                 embed_dim, num_head, qkv_weight: Value, qkv_bias: Value,
                                 proj_weight: Value, proj_bias: Value, mask=None,
                                 need_weights=True, average_attn_weights=True, mask_type=None):
    out, p = multi_head_attention_(cx, query, key, value, embed_dim, num_head, qkv_weight,
                                   qkv_bias, proj_weight, proj_bias, mask)
    if not need_weights:
        return out, Missing("the attention weights of multi-head attention with "
                            "need_weights=False are empty")
    if average_attn_weights:
        p = cx.op("reduce_mean", p, axes=(1,), keepdims=0)
    return out, p


@converter("aten::_transformer_encoder_layer_fwd")
def _transformer_encoder_layer_fwd(cx: NodeContext, src: Value, embed_dim, num_heads,
                                   qkv_weight, qkv_bias, proj_weight, proj_bias, use_gelu,
                                   norm_first, eps, norm_weight_1, norm_bias_1, norm_weight_2,
                                   norm_bias_2, ffn_weight_1, ffn_bias_1, ffn_weight_2,
                                   ffn_bias_2, mask=None, mask_type=None) -> Value:
    """nn.TransformerEncoderLayer's inference fast path (batch first)."""
    e = int(embed_dim)

    def attn(x):
        return multi_head_attention_(cx, x, x, x, e, num_heads, qkv_weight, qkv_bias,
                                     proj_weight, proj_bias, mask)[0]

    def ffn(x):
        y = linear_(cx, x, ffn_weight_1, ffn_bias_1)
        y = cx.op("gelu", y) if use_gelu else cx.op("relu", y)
        return linear_(cx, y, ffn_weight_2, ffn_bias_2)

    def norm(x, w, b):
        return layer_norm_(cx, x, [e], w, b, eps)

    x = src
    if norm_first:
        x = cx.op("add", x, attn(norm(x, norm_weight_1, norm_bias_1)))
        return cx.op("add", x, ffn(norm(x, norm_weight_2, norm_bias_2)))
    x = norm(cx.op("add", x, attn(x)), norm_weight_1, norm_bias_1)
    return norm(cx.op("add", x, ffn(x)), norm_weight_2, norm_bias_2)
