"""Converters for attention: scaled_dot_product_attention, the fused multi-head attention of
nn.MultiheadAttention's inference path, and the fused nn.TransformerEncoderLayer, all decomposed
into matmul, softmax, layer norm and elementwise ops."""
from __future__ import annotations

from neo.ir import Value

from ..common.decompose import attention, causal_bias, mask_bias, merge_heads, split_heads
from .context import Missing, NodeContext
from .math import linear_
from .nn import layer_norm_
from .registry import converter


def attention_(cx: NodeContext, q: Value, k: Value, v: Value, mask: Value | None,
               is_causal: bool, scale: float | None) -> tuple[Value, Value]:
    """softmax(q @ k^T * scale + mask) @ v; returns the output and the attention weights."""
    bias = None
    if is_causal:
        bias = causal_bias(cx, q.shape[-2], k.shape[-2], q.dtype)
    elif mask is not None:
        bias = mask_bias(cx, mask, q.dtype)  # a boolean mask: True takes part
    out, probs, _, _ = attention(cx, q, k, v, bias=bias, scale=scale)
    return out, probs


@converter("aten::scaled_dot_product_attention")
def scaled_dot_product_attention(cx: NodeContext, query: Value, key: Value, value: Value,
                                 attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False) -> Value:
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        cx.unsupported("grouped-query attention (enable_gqa with fewer key heads)")
    return attention_(cx, query, key, value, attn_mask, bool(is_causal), scale)[0]


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
    o, p = attention_(cx, split_heads(cx, q, h), split_heads(cx, k, h), split_heads(cx, v, h),
                      None, False, None)
    o = merge_heads(cx, o)
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
