"""Converters for Resize (opsets 10, 11, 13, 18, 19) and the older Upsample (opsets 7, 9).

The IR `resize` takes the output size and per-axis scale for every axis; this module works those out
from ONNX scales or sizes, `axes` and `keep_aspect_ratio_policy`, as onnxruntime does.
"""
from __future__ import annotations

import numpy as np

from neo.ir import Value

from .context import NodeContext, normalize_axes
from .registry import converter

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                    "asymmetric", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
POLICIES = ("stretch", "not_larger", "not_smaller")


def _f32(x: float) -> float:
    # onnxruntime keeps scales in float32; rounding ours the same way keeps nearest-neighbour
    # ties on the same side.
    return float(x)


def _scaled_size(dim: int, scale: float) -> int:
    return int(np.floor(np.float32(dim) * np.float32(scale)))


def _check(cx: NodeContext, attribute: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        cx.unsupported_attribute(attribute, value, ", ".join(allowed))


# -- opset 7-10: Upsample and Resize-10 ------------------------------------------------------------
def _legacy(cx: NodeContext, X: Value, scales, mode: str) -> Value:
    """Asymmetric coordinates; nearest truncates when enlarging and rounds up when shrinking."""
    _check(cx, "mode", mode, ("nearest", "linear"))
    if scales is None or len(scales) != X.type.rank:
        raise ValueError(f"scales {scales} must have one value per axis of {X.shape}")
    size = [_scaled_size(d, s) for d, s in zip(X.shape, scales)]
    common = {"coord": "asymmetric", "cubic_coeff_a": -0.75, "exclude_outside": 0,
              "extrapolation_value": 0.0, "roi": None}
    if mode == "linear":
        return cx.op("resize", X, size=tuple(size), scales=tuple(_f32(s) for s in scales),
                     mode="linear", nearest_mode="floor", **common)
    # Nearest is separable: resize the shrinking axes (ceil) and the others (floor) in turn.
    out = X
    for shrink, nearest_mode in ((False, "floor"), (True, "ceil")):
        axes = [i for i, s in enumerate(scales) if (s < 1) == shrink and size[i] != X.shape[i]]
        if not axes:
            continue
        step_size = [size[i] if i in axes else out.shape[i] for i in range(X.type.rank)]
        step_scale = [_f32(scales[i]) if i in axes else 1.0 for i in range(X.type.rank)]
        out = cx.op("resize", out, size=tuple(step_size), scales=tuple(step_scale), mode="nearest",
                    nearest_mode=nearest_mode, **common)
    return out


@converter("Upsample", since=7)
def Upsample_7(cx: NodeContext, X: Value, *, mode, scales) -> Value:
    return _legacy(cx, X, scales, mode)


@converter("Upsample", since=9)
def Upsample(cx: NodeContext, X: Value, scales: Value, *, mode) -> Value:
    return _legacy(cx, X, cx.floats(scales, "scales"), mode)


@converter("Resize", since=10)
def Resize_10(cx: NodeContext, X: Value, scales: Value, *, mode) -> Value:
    return _legacy(cx, X, cx.floats(scales, "scales"), mode)


# -- opset 11 on -----------------------------------------------------------------------------------
@converter("Resize", since=11)
def Resize(cx: NodeContext, X: Value, roi: Value | None = None, scales: Value | None = None,
           sizes: Value | None = None, *, antialias, axes, coordinate_transformation_mode,
           cubic_coeff_a, exclude_outside, extrapolation_value, keep_aspect_ratio_policy, mode,
           nearest_mode) -> Value:
    _check(cx, "mode", mode, MODES)
    _check(cx, "coordinate_transformation_mode", coordinate_transformation_mode, COORDINATE_MODES)
    if mode == "nearest":
        _check(cx, "nearest_mode", nearest_mode, NEAREST_MODES)
    if antialias:
        cx.unsupported_attribute("antialias", antialias, "0")
    policy = keep_aspect_ratio_policy or "stretch"
    _check(cx, "keep_aspect_ratio_policy", policy, POLICIES)

    rank = X.type.rank
    axes = normalize_axes(axes, rank) if axes else list(range(rank))
    sizes = cx.ints(sizes, "sizes") or None
    scales = cx.floats(scales, "scales") or None
    roi = cx.floats(roi, "roi") or None
    full_scales, full_size = [1.0] * rank, list(X.shape)
    if sizes is not None:
        ratios = [sizes[i] / X.shape[a] for i, a in enumerate(axes)]
        if policy != "stretch":
            keep = min(ratios) if policy == "not_larger" else max(ratios)
            ratios = [keep] * len(axes)
            sizes = [int(keep * X.shape[a] + 0.5) for a in axes]
        for i, a in enumerate(axes):
            full_scales[a], full_size[a] = _f32(ratios[i]), sizes[i]
    elif scales is not None:
        for i, a in enumerate(axes):
            full_scales[a], full_size[a] = _f32(scales[i]), _scaled_size(X.shape[a], scales[i])
    else:
        raise ValueError("Resize needs either scales or sizes")
    full_roi = None
    if coordinate_transformation_mode == "tf_crop_and_resize":
        if roi is None:
            cx.unsupported("tf_crop_and_resize without a roi input is not implemented")
        full_roi = [0.0] * rank + [1.0] * rank
        for i, a in enumerate(axes):
            full_roi[a], full_roi[rank + a] = roi[i], roi[len(axes) + i]
        full_roi = tuple(full_roi)
    if tuple(full_size) == X.shape and all(s == 1.0 for s in full_scales) and full_roi is None:
        return X
    return cx.op("resize", X, size=tuple(full_size), scales=tuple(full_scales), mode=mode,
                 coord=coordinate_transformation_mode, nearest_mode=nearest_mode,
                 cubic_coeff_a=float(cubic_coeff_a), exclude_outside=int(exclude_outside),
                 extrapolation_value=float(extrapolation_value), roi=full_roi)
