"""Converters for the loss functions NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss,
decomposed into gather_elements, log_softmax and reductions."""
from __future__ import annotations

import math

from neo.ir import Value

from .context import NodeContext
from .registry import converter

REDUCTIONS = ("none", "sum", "mean")


def _nll(cx: NodeContext, input: Value, target: Value, weight: Value | None, reduction: str,
         ignore_index: int | None) -> Value:
    # loss[n, d...] = -input[n, target[n, d...], d...] * w[target[n, d...]], where w is the
    # class weight (1 without weights) and 0 for targets equal to ignore_index; "mean" divides
    # the sum by the sum of those w.
    if reduction not in REDUCTIONS:
        cx.unsupported_attribute("reduction", reduction, ", ".join(REDUCTIONS))
    t = cx.cast(target, "int64")
    valid = None
    if ignore_index is not None:
        valid = cx.op("not", cx.op("equal", t, cx.scalar(ignore_index, "int64")))
        t = cx.op("where", valid, t, cx.scalar(0, "int64"))  # a safe index where ignored
    with_class = cx.reshape(t, (t.shape[0], 1) + t.shape[1:])
    picked = cx.reshape(cx.op("gather_elements", input, with_class, axis=1), t.shape)
    loss = cx.op("neg", picked)
    w = None if weight is None else cx.op("gather", weight, t, axis=0)
    if valid is not None:
        kept = w if w is not None else cx.scalar(1, input.dtype)
        w = cx.op("where", valid, kept, cx.scalar(0, input.dtype))  # shaped like t
    if w is not None:
        loss = cx.op("mul", loss, w)
    if reduction == "none":
        return loss
    axes = tuple(range(t.type.rank))
    total = cx.op("reduce_sum", loss, axes=axes, keepdims=0)
    if reduction == "sum":
        return total
    if w is None:
        return cx.op("div", total, cx.scalar(math.prod(t.shape), input.dtype))
    return cx.op("div", total, cx.op("reduce_sum", w, axes=axes, keepdims=0))


@converter("NegativeLogLikelihoodLoss", since=12)
def NegativeLogLikelihoodLoss(cx: NodeContext, input: Value, target: Value,
                              weight: Value | None = None, *, ignore_index=None, reduction
                              ) -> Value:
    return _nll(cx, input, target, weight, reduction, ignore_index)


@converter("SoftmaxCrossEntropyLoss", since=12)
def SoftmaxCrossEntropyLoss(cx: NodeContext, scores: Value, labels: Value,
                            weights: Value | None = None, *, ignore_index=None, reduction
                            ) -> list[Value]:
    # nll(log_softmax(scores over the classes), labels); the second output is the log_softmax
    log_prob = cx.op("log_softmax", scores, axis=1)
    return [_nll(cx, log_prob, labels, weights, reduction, ignore_index), log_prob]
