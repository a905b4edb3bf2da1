"""The Attention converter (opset 23): ONNX's masks, past keys and grouped-query heads mapped onto
the shared scaled dot-product attention (frontends/common/decompose.py), which follows the ONNX
reference step by step (Q and K each scaled by sqrt(scale))."""
from __future__ import annotations

import numpy as np

from neo.ir import Value

from ..common.decompose import attention, causal_bias, mask_bias, merge_heads, split_heads
from .context import NodeContext, onnx_dtype
from .registry import converter

QK_OUTPUT_MODES = (0, 1, 2, 3)


def _heads(cx: NodeContext, x: Value, num_heads: int | None, what: str) -> Value:
    """(B, S, hidden) -> (B, heads, S, hidden / heads); 4-D inputs are already so."""
    if x.type.rank == 4:
        return x
    if not num_heads:
        cx.required(f"q_num_heads and kv_num_heads (for 3-D {what})")
    return split_heads(cx, x, num_heads)


@converter("Attention", since=23)
def Attention(cx: NodeContext, Q: Value, K: Value, V: Value, attn_mask: Value | None = None,
              past_key: Value | None = None, past_value: Value | None = None,
              nonpad_kv_seqlen: Value | None = None, *, is_causal, kv_num_heads, q_num_heads,
              qk_matmul_output_mode, scale, softcap, softmax_precision) -> list[Value]:
    if qk_matmul_output_mode not in QK_OUTPUT_MODES:
        cx.unsupported_attribute("qk_matmul_output_mode", qk_matmul_output_mode, "0, 1, 2, 3")
    dt = Q.dtype
    rank3 = Q.type.rank == 3
    q = _heads(cx, Q, q_num_heads, "Q")
    k = _heads(cx, K, kv_num_heads, "K")
    v = _heads(cx, V, kv_num_heads, "V")
    present_key = k if past_key is None else cx.op("concat", past_key, k, axis=2)
    present_value = v if past_value is None else cx.op("concat", past_value, v, axis=2)
    k, v = present_key, present_value
    q_len, kv_len = q.shape[2], k.shape[2]
    past_len = 0 if past_key is None else past_key.shape[2]

    bias = None
    if attn_mask is not None:
        bias = mask_bias(cx, attn_mask, dt)  # True attends
        short = kv_len - bias.shape[-1]
        if short > 0:  # a mask shorter than the keys masks the rest
            pads = [0] * (2 * bias.type.rank)
            pads[-1] = short
            bias = cx.op("pad", bias, pads=tuple(pads), mode="constant", value=-np.inf)
    if is_causal:
        causal = causal_bias(cx, q_len, kv_len, dt, past_len)
        bias = causal if bias is None else cx.op("add", bias, causal)
    if nonpad_kv_seqlen is not None:
        valid = cx.op("less", cx.const(np.arange(kv_len, dtype=np.int64).reshape(1, 1, 1, -1)),
                      cx.reshape(cx.cast(nonpad_kv_seqlen, "int64"),
                                 (nonpad_kv_seqlen.shape[0], 1, 1, 1)))
        pad_bias = cx.op("where", valid, cx.scalar(0, dt), cx.scalar(-np.inf, dt))
        bias = pad_bias if bias is None else cx.op("add", bias, pad_bias)

    heads_q, heads_k = q.shape[1], k.shape[1]
    if heads_q != heads_k and heads_q % heads_k == 0:  # grouped-query attention
        reps = cx.const(np.repeat(np.arange(heads_k), heads_q // heads_k).astype(np.int64))
        k = cx.op("gather", k, reps, axis=1)
        v = cx.op("gather", v, reps, axis=1)
    # the reference scales Q and K by sqrt(scale) each
    y, probs, scores, biased = attention(
        cx, q, k, v, bias=bias, scale=scale, scale_both=True, softcap=softcap,
        softmax_dtype=None if softmax_precision is None else onnx_dtype(softmax_precision))
    qk_out = {2: biased, 3: probs}.get(qk_matmul_output_mode, scores)
    if rank3:
        y = merge_heads(cx, y)
    return [y, present_key, present_value, qk_out]
