"""The Attention converter (opset 23): scaled dot-product attention decomposed into transpose,
matmul, softmax and elementwise ops, following the ONNX reference step by step."""
from __future__ import annotations

import numpy as np

from neo.ir import Value

from .context import NodeContext, onnx_dtype
from .registry import converter

QK_OUTPUT_MODES = (0, 1, 2, 3)


def _heads(cx: NodeContext, x: Value, num_heads: int | None, what: str) -> Value:
    """(B, S, hidden) -> (B, heads, S, hidden / heads); 4-D inputs are already so."""
    if x.type.rank == 4:
        return x
    if not num_heads:
        cx.unsupported(f"3-D {what} needs the q_num_heads and kv_num_heads attributes")
    b, s, hidden = x.shape
    x = cx.reshape(x, (b, s, num_heads, hidden // num_heads))
    return cx.op("transpose", x, perm=(0, 2, 1, 3))


def _float_bias(cx: NodeContext, mask: Value, dtype: str) -> Value:
    """An additive mask: booleans become 0 (attend) and -inf (masked)."""
    if mask.dtype != "bool":
        return cx.cast(mask, dtype)
    return cx.op("where", mask, cx.scalar(0, dtype), cx.scalar(-np.inf, dtype))


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
    if scale is None:
        scale = 1 / np.sqrt(q.shape[3])
    root = np.sqrt(scale)  # applied to Q and K each, as the reference does
    present_key = k if past_key is None else cx.op("concat", past_key, k, axis=2)
    present_value = v if past_value is None else cx.op("concat", past_value, v, axis=2)
    k, v = present_key, present_value
    q_len, kv_len = q.shape[2], k.shape[2]
    past_len = 0 if past_key is None else past_key.shape[2]

    bias = None
    if attn_mask is not None:
        bias = _float_bias(cx, attn_mask, dt)
        short = kv_len - bias.shape[-1]
        if short > 0:  # a mask shorter than the keys masks the rest
            pads = [0] * (2 * bias.type.rank)
            pads[-1] = short
            bias = cx.op("pad", bias, pads=tuple(pads), mode="constant", value=-np.inf)
    if is_causal:
        # query i sees keys j <= past_len + i
        j = np.arange(kv_len)[None, :]
        i = np.arange(q_len)[:, None]
        causal = cx.const(np.where(j > past_len + i, -np.inf, 0).astype(dt))
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
    qs = cx.op("mul", q, cx.scalar(root, dt))
    kt = cx.op("mul", cx.op("transpose", k, perm=(0, 1, 3, 2)), cx.scalar(root, dt))
    qk = cx.op("matmul", qs, kt)
    if softcap and softcap > 0:
        cap = cx.scalar(softcap, dt)
        qk = cx.op("mul", cx.op("tanh", cx.op("div", qk, cap)), cap)
    qk_out = qk
    with_bias = qk if bias is None else cx.op("add", qk, bias)
    if qk_matmul_output_mode == 2:
        qk_out = with_bias
    sm_in = with_bias if softmax_precision is None else cx.cast(with_bias,
                                                               onnx_dtype(softmax_precision))
    probs = cx.cast(cx.op("softmax", sm_in, axis=3), dt)
    if qk_matmul_output_mode == 3:
        qk_out = probs
    y = cx.op("matmul", probs, v)
    if rank3:
        b, h, s, d = y.shape
        y = cx.reshape(cx.op("transpose", y, perm=(0, 2, 1, 3)), (b, s, h * d))
    return [y, present_key, present_value, qk_out]
