"""Writes tests/data/mxnet/: Gluon model-zoo architectures, an LSTM model, a transformer block and
one model of many small op cases, exported by MXNet 1.9.1 (`NAME-symbol.json` +
`NAME-0000.params`), with their inputs and MXNet's outputs (`NAME-io.npz`) and a manifest.

MXNet 1.9.1 (the last release) needs numpy < 1.24, so it runs in its own venv:

    python3 -m venv /tmp/mxvenv
    /tmp/mxvenv/bin/pip install mxnet==1.9.1 numpy==1.23.5 scikit-image==0.22.0
    /tmp/mxvenv/bin/python scripts/mxnet_fixtures.py            # all, into tests/data/mxnet
    /tmp/mxvenv/bin/python scripts/mxnet_fixtures.py resnet18_v1 ops   # some of them

The tests (tests/test_mxnet.py) need none of this: they compile the committed files.

Informative outputs (docs/STYLE.md point 13): images are real photos (scikit-image's astronaut,
chelsea, coffee) normalized as ImageNet inputs; every BatchNorm gets the batch statistics of a
calibration batch (momentum 0 during one training-mode pass), random scales and shifts; each
classifier's reference is checked to spread and to have a clear top-1. Widths are reduced to keep
the files small (the manifest records how): the zoo's `classes` and `multiplier` arguments, its
ResNet/DenseNet/VGG constructors' channel lists, and for Inception-v3 (whose widths are fixed)
its conv helper with every width divided by 6. The topology of each architecture is unchanged.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

# Quiet MXNet's log lines per bind.
os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
os.environ.setdefault("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0")

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn, rnn
from mxnet.gluon.model_zoo import vision

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "mxnet"
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1)


# -- inputs ----------------------------------------------------------------------------------------
def photos(size: int, names=("astronaut", "chelsea", "coffee")) -> np.ndarray:
    """Real photos, center-cropped square, resized, ImageNet-normalized, NCHW float32."""
    from skimage import data, transform

    out = []
    for name in names:
        img = getattr(data, name)().astype(np.float32) / 255.0
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        img = transform.resize(img, (size, size), anti_aliasing=True).astype(np.float32)
        out.append((img.transpose(2, 0, 1) - MEAN) / STD)
    return np.stack(out).astype(np.float32)


def calibration_batch(size: int) -> np.ndarray:
    """Photo crops, flips and noise: what BatchNorm statistics are taken from."""
    base = photos(size)
    r = np.random.RandomState(5)
    noisy = base + 0.5 * r.standard_normal(base.shape).astype(np.float32)
    return np.concatenate([base, base[:, :, :, ::-1], noisy]).astype(np.float32)


# -- making networks informative ----------------------------------------------------------------
def batchnorms(block: gluon.Block) -> list:
    found = []

    def visit(b):
        if isinstance(b, nn.BatchNorm):
            found.append(b)
        for c in b._children.values():
            visit(c)

    visit(block)
    return found


def calibrate(net: gluon.HybridBlock, x: np.ndarray, seed: int) -> None:
    """Random BN scales/shifts, then running statistics = the batch statistics of `x`."""
    r = np.random.RandomState(seed)
    bns = batchnorms(net)
    for bn in bns:
        if bn._kwargs["fix_gamma"] is False:
            bn.gamma.set_data(mx.nd.array(r.uniform(0.6, 1.4, bn.gamma.shape)))
        bn.beta.set_data(mx.nd.array(r.normal(0, 0.2, bn.beta.shape)))
        bn._kwargs["momentum"] = 0.0  # imperative: one training-mode pass sets the statistics
    with autograd.record(train_mode=True):
        net(mx.nd.array(x))
    for bn in bns:
        bn._kwargs["momentum"] = 0.9


def center_classifier(net) -> None:
    """The classifier reads post-ReLU features whose large common mode (the same for every
    input) would decide the top-1 of a random network for every image; zero-mean weights per
    class leave the logits driven by what differs between inputs."""
    layer = net.output if hasattr(net.output, "weight") else net.output[0]
    w = layer.weight.data().asnumpy()
    axes = tuple(range(1, w.ndim))
    layer.weight.set_data(mx.nd.array(w - w.mean(axis=axes, keepdims=True)))


# -- the zoo, narrowed ---------------------------------------------------------------------------
class _NarrowDense:
    """gluon.nn for vision.vgg with its two 4096-unit Dense layers at 256 units."""

    def __getattr__(self, name):
        return getattr(nn, name)

    @staticmethod
    def Dense(units, *args, **kwargs):
        return nn.Dense(min(units, 256), *args, **kwargs)


def vgg11_bn():
    from mxnet.gluon.model_zoo.vision import vgg

    saved = vgg.nn
    vgg.nn = _NarrowDense()
    try:
        return vision.VGG([1, 1, 2, 2, 2], [8, 16, 32, 64, 64], batch_norm=True, classes=10)
    finally:
        vgg.nn = saved


def inceptionv3():
    from mxnet.gluon.model_zoo.vision import inception

    saved = inception._make_basic_conv

    def narrow(**kwargs):
        kwargs["channels"] = max(8, kwargs["channels"] // 6)
        return saved(**kwargs)

    inception._make_basic_conv = narrow
    try:
        return vision.Inception3(classes=10)
    finally:
        inception._make_basic_conv = saved


ZOO = {
    # name: (constructor, input size, batch, how it is narrowed)
    "resnet18_v1": (lambda: vision.ResNetV1(vision.BasicBlockV1, [2, 2, 2, 2],
                                            [16, 16, 32, 64, 128], classes=10), 112, 3,
                    "channels [16, 16, 32, 64, 128] (1/4), 10 classes"),
    "resnet50_v2": (lambda: vision.ResNetV2(vision.BottleneckV2, [3, 4, 6, 3],
                                            [8, 32, 64, 128, 256], classes=10), 112, 1,
                    "channels [8, 32, 64, 128, 256] (1/8), 10 classes"),
    "mobilenet1.0": (lambda: vision.MobileNet(multiplier=0.25, classes=10), 128, 1,
                     "multiplier 0.25 (the zoo's mobilenet0.25), 10 classes"),
    "mobilenetv2_1.0": (lambda: vision.MobileNetV2(multiplier=0.25, classes=10), 128, 1,
                        "multiplier 0.25 (the zoo's mobilenetv2_0.25), 10 classes"),
    "squeezenet1.1": (lambda: vision.SqueezeNet("1.1", classes=10), 224, 1,
                      "full width, 10 classes"),
    "densenet121": (lambda: vision.DenseNet(16, 8, [6, 12, 24, 16], classes=10), 224, 1,
                    "16 initial features, growth rate 8 (1/4), 10 classes"),
    "inceptionv3": (inceptionv3, 299, 1, "every conv width / 6 (at least 8), 10 classes"),
    "vgg11_bn": (vgg11_bn, 64, 1, "filters [8, 16, 32, 64, 64] (1/8), dense 256, 10 classes"),
}


# -- an LSTM model and a transformer block -------------------------------------------------------
TEXT = ("neo compiles trained models for the devices they run on and the compiled model runs "
        "faster with less memory on the same hardware")


def tokens(batch: int, length: int, vocab: int) -> np.ndarray:
    """Words of a real sentence as ids (a stable hash into the vocabulary), as float32 as
    MXNet's Embedding takes them."""
    words = TEXT.split()
    ids = [sum(ord(c) * 31 ** i for i, c in enumerate(w)) % vocab for w in words]
    rows = [ids[b * 3:b * 3 + length] for b in range(batch)]
    return np.array(rows, np.float32)


class LstmModel(gluon.HybridBlock):
    """Embedding -> 2-layer bidirectional LSTM (batch-major) -> GRU -> ReLU RNN -> Dense ->
    log_softmax: every mode of the fused RNN op and Gluon's zero initial states."""

    def __init__(self, vocab=64, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.emb = nn.Embedding(vocab, 24)
            self.lstm = rnn.LSTM(32, num_layers=2, bidirectional=True, layout="NTC")
            self.gru = rnn.GRU(20, layout="TNC")
            self.rnn = rnn.RNN(16, activation="relu", layout="TNC")
            self.out = nn.Dense(vocab, flatten=False)

    def hybrid_forward(self, F, x):
        h = self.lstm(self.emb(x))  # (N, T, 64)
        h = F.swapaxes(h, 0, 1)  # (T, N, 64)
        h = self.rnn(self.gru(h))
        return F.log_softmax(self.out(F.swapaxes(h, 0, 1)), axis=-1)


class LstmWithStates(gluon.HybridBlock):
    """An LSTM fed its initial states: three inputs in order, three outputs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.lstm = rnn.LSTM(16, num_layers=1, layout="TNC", input_size=8)

    def hybrid_forward(self, F, x, h0, c0):
        out, (hy, cy) = self.lstm(x, [h0, c0])
        return out, hy, cy


class TransformerBlock(gluon.HybridBlock):
    """A BERT-style encoder layer over token embeddings with a padding mask, mean-pooled into a
    classifier. Reshape codes (-4 split, -3 merge, -2 keep the rest, 0 copy), split with
    squeeze_axis, batch_dot, softmax, LayerNorm, GELU, Dropout, arange and the scalar ops."""

    def __init__(self, vocab=64, units=32, heads=4, classes=5, **kwargs):
        super().__init__(**kwargs)
        self.heads = heads
        self.units = units
        with self.name_scope():
            self.emb = nn.Embedding(vocab, units)
            self.pos = nn.Embedding(32, units)
            self.qkv = nn.Dense(3 * units, flatten=False)
            self.proj = nn.Dense(units, flatten=False)
            self.ln1 = nn.LayerNorm()
            self.ln2 = nn.LayerNorm()
            self.ffn1 = nn.Dense(4 * units, flatten=False)
            self.ffn2 = nn.Dense(units, flatten=False)
            self.drop = nn.Dropout(0.1)
            self.cls = nn.Dense(classes)

    def hybrid_forward(self, F, tokens, mask):
        x = F.broadcast_add(self.emb(tokens), self.pos(F.contrib.arange_like(tokens, axis=1)))
        qkv = F.reshape(self.qkv(x), shape=(0, 0, -4, 3, -1))  # (B, S, 3, E)
        q, k, v = F.split(qkv, num_outputs=3, axis=2, squeeze_axis=True)

        def heads(t):  # (B, S, E) -> (B * H, S, D)
            t = F.transpose(F.reshape(t, shape=(0, 0, -4, self.heads, -1)), axes=(0, 2, 1, 3))
            return F.reshape(t, shape=(-3, -2))

        scores = F.batch_dot(heads(q), heads(k), transpose_b=True)
        scores = scores / math.sqrt(self.units // self.heads)
        bias = F.expand_dims((1 - mask) * -1e4, axis=1)  # (B, 1, S): -1e4 at padding
        bias = F.reshape(F.broadcast_axis(F.expand_dims(bias, axis=1), axis=1,
                                          size=self.heads), shape=(-3, 0, 0))
        probs = F.softmax(F.broadcast_add(scores, bias), axis=-1)
        ctx = F.batch_dot(probs, heads(v))  # (B * H, S, D)
        ctx = F.reshape(F.transpose(F.reshape(ctx, shape=(-4, -1, self.heads, 0, 0)),
                                    axes=(0, 2, 1, 3)), shape=(0, 0, -1))
        x = self.ln1(x + self.drop(self.proj(ctx)))
        ffn = self.ffn2(F.LeakyReLU(self.ffn1(x), act_type="gelu"))
        x = self.ln2(x + self.drop(ffn))
        pooled = F.broadcast_div(F.sum(F.broadcast_mul(x, F.expand_dims(mask, axis=2)), axis=1),
                                 F.sum(mask, axis=1, keepdims=True))
        return self.cls(pooled)


# -- op cases ------------------------------------------------------------------------------------
def op_cases(r: np.random.RandomState, native: bool = False):
    """(name, output symbol, {input: array}, {param: array}) of every op case; `native`: those
    that run on MXNet's own CPU kernels (the others on its oneDNN ones, see main)."""
    S = mx.sym
    cases = []
    if native:
        x = S.var("deconvt_x")
        t = S.var("softmax_x")
        return [("deconv_target_groups",
                 S.Deconvolution(x, S.var("deconvt_w"), kernel=(3, 3), stride=(3, 3),
                                 target_shape=(14, 14), num_filter=4, num_group=2),
                 {"deconvt_x": r.standard_normal((1, 4, 5, 5)).astype(np.float32)},
                 {"deconvt_w": r.standard_normal((4, 2, 3, 3)).astype(np.float32)}),
                # its oneDNN kernel takes a 4-D input's softmax over the last axis, not over
                # the flattened (batch, -1) as documented and as MXNet's own kernel does
                ("softmaxoutput", S.SoftmaxOutput(t, S.var("softmax_label")),
                 {"softmax_x": r.standard_normal((2, 3, 4, 5)).astype(np.float32)}, {})]

    def var(name, shape, low=None, high=None):
        arr = (r.uniform(low, high, shape) if low is not None
               else r.standard_normal(shape)).astype(np.float32)
        return S.var(name), arr

    def case(name, out, inputs, params=None):
        if len(out.list_outputs()) > 1:  # rrelu also outputs its mask
            out = out[0]
        cases.append((name, out, inputs, params or {}))

    x, xa = var("conv_x", (1, 4, 9, 9))
    w = r.standard_normal((6, 2, 3, 3)).astype(np.float32) * 0.3
    b = r.standard_normal(6).astype(np.float32)
    case("conv_groups_dilate", S.Convolution(x, S.var("conv_w"), S.var("conv_b"), kernel=(3, 3),
                                             num_filter=6, num_group=2, dilate=(2, 2),
                                             stride=(2, 2), pad=(2, 1)),
         {"conv_x": xa}, {"conv_w": w, "conv_b": b})
    x, xa = var("conv1d_x", (2, 3, 12))
    case("conv1d_nobias", S.Convolution(x, S.var("conv1d_w"), kernel=(3,), num_filter=4,
                                        no_bias=True, pad=(1,)),
         {"conv1d_x": xa}, {"conv1d_w": r.standard_normal((4, 3, 3)).astype(np.float32)})
    x, xa = var("deconv_x", (1, 4, 5, 5))
    case("deconv_adj", S.Deconvolution(x, S.var("deconv_w"), S.var("deconv_b"), kernel=(4, 4),
                                       stride=(2, 2), pad=(1, 1), adj=(1, 1), num_filter=3,
                                       no_bias=False),
         {"deconv_x": xa}, {"deconv_w": r.standard_normal((4, 3, 4, 4)).astype(np.float32),
                            "deconv_b": r.standard_normal(3).astype(np.float32)})
    x, xa = var("fc_x", (2, 5, 6))
    case("fc_no_flatten", S.FullyConnected(x, S.var("fc_w"), S.var("fc_b"), num_hidden=3,
                                           flatten=False),
         {"fc_x": xa}, {"fc_w": r.standard_normal((3, 6)).astype(np.float32),
                        "fc_b": r.standard_normal(3).astype(np.float32)})
    x, xa = var("fcf_x", (2, 3, 2, 2))
    case("fc_flatten_nobias", S.FullyConnected(x, S.var("fcf_w"), num_hidden=4, no_bias=True),
         {"fcf_x": xa}, {"fcf_w": r.standard_normal((4, 12)).astype(np.float32)})
    for name, kw in (("bn_fix_gamma", {}), ("bn_axis_last", {"axis": -1, "fix_gamma": False,
                                                             "eps": 1e-2})):
        c = 5
        x, xa = var(f"{name}_x", (2, 3, 4, c) if kw.get("axis") == -1 else (2, c, 3, 4))
        case(name, S.BatchNorm(x, S.var(f"{name}_g"), S.var(f"{name}_b"), S.var(f"{name}_m"),
                               S.var(f"{name}_v"), **kw),
             {f"{name}_x": xa}, {f"{name}_g": r.uniform(0.5, 2, c).astype(np.float32),
                                 f"{name}_b": r.standard_normal(c).astype(np.float32),
                                 f"aux:{name}_m": r.standard_normal(c).astype(np.float32),
                                 f"aux:{name}_v": r.uniform(0.5, 2, c).astype(np.float32)})
    for act in ("relu", "sigmoid", "tanh", "softrelu", "softsign"):
        x, xa = var(f"act_{act}_x", (2, 7))
        case(f"activation_{act}", S.Activation(x, act_type=act), {f"act_{act}_x": 3 * xa})
    for act, kw in (("leaky", {"slope": 0.1}), ("elu", {"slope": 0.7}), ("selu", {}),
                    ("gelu", {}), ("rrelu", {})):
        x, xa = var(f"lrelu_{act}_x", (2, 7))
        case(f"leakyrelu_{act}", S.LeakyReLU(x, act_type=act, **kw), {f"lrelu_{act}_x": 3 * xa})
    x, xa = var("prelu_x", (2, 3, 4))
    case("leakyrelu_prelu", S.LeakyReLU(x, S.var("prelu_g"), act_type="prelu"),
         {"prelu_x": xa}, {"prelu_g": np.array([0.1, 0.5, -0.3], np.float32)})
    pools = {
        "pool_max_full": {"kernel": (3, 3), "stride": (2, 2), "pool_type": "max",
                              "pooling_convention": "full"},
        "pool_max_full_past_pad": {"kernel": (2, 2), "stride": (2, 2), "pad": (1, 1),
                                       "pool_type": "max", "pooling_convention": "full"},
        "pool_avg_full_include_pad": {"kernel": (3, 3), "stride": (2, 2), "pad": (1, 1),
                                          "pool_type": "avg", "pooling_convention": "full"},
        "pool_avg_full_past_pad": {"kernel": (2, 2), "stride": (2, 2), "pad": (1, 1),
                                       "pool_type": "avg", "pooling_convention": "full"},
        "pool_avg_exclude_pad": {"kernel": (3, 3), "stride": (1, 1), "pad": (1, 1), "pool_type": "avg",
                                     "count_include_pad": False},
        "pool_sum": {"kernel": (2, 3), "stride": (1, 2), "pad": (0, 1), "pool_type": "sum"},
        "pool_lp2": {"kernel": (2, 2), "stride": (2, 2), "pool_type": "lp", "p_value": 2},
        "pool_global_max": {"kernel": (1, 1), "global_pool": True, "pool_type": "max"},
        "pool_global_sum": {"kernel": (1, 1), "global_pool": True, "pool_type": "sum"},
    }
    for name, kw in pools.items():
        x, xa = var(f"{name}_x", (1, 2, 7, 7) if "past" not in name else (1, 2, 5, 5))
        case(name, S.Pooling(x, **kw), {f"{name}_x": xa})
    x, xa = var("pool1d_x", (1, 2, 9))
    case("pool_1d_avg", S.Pooling(x, kernel=(3,), stride=(2,), pool_type="avg"),
         {"pool1d_x": xa})

    a, aa = var("bin_a", (2, 3, 4))
    bb, ba = var("bin_b", (2, 3, 4))
    for op in ("elemwise_add", "elemwise_sub", "elemwise_mul", "elemwise_div"):
        case(op, getattr(S, op)(a, bb), {"bin_a": aa, "bin_b": ba})
    c, ca = var("bc_c", (1, 3, 1), 0.5, 2.0)
    for op in ("broadcast_add", "broadcast_sub", "broadcast_mul", "broadcast_div",
               "broadcast_maximum", "broadcast_minimum"):
        case(op, getattr(S, op)(a, c), {"bin_a": aa, "bc_c": ca})
    # comparisons on values that are often equal (halves), so that each outcome occurs
    ha, haa = S.var("cmp_a"), np.round(2 * r.standard_normal((2, 3, 4))).astype(np.float32) / 2
    hc, hca = S.var("cmp_c"), np.round(2 * r.standard_normal((1, 3, 1))).astype(np.float32) / 2
    for op in ("broadcast_equal", "broadcast_greater", "broadcast_lesser_equal",
               "broadcast_not_equal", "broadcast_logical_and", "broadcast_logical_or"):
        case(op, getattr(S, op)(ha, hc), {"cmp_a": haa, "cmp_c": hca})
    p, pa = var("pow_a", (2, 3), 0.5, 2.0)
    e, ea = var("pow_e", (1, 3), -1.5, 1.5)
    case("broadcast_power", S.broadcast_power(p, e), {"pow_a": pa, "pow_e": ea})
    s, sa = var("sc_x", (2, 5), 0.5, 3.0)
    scalar_ops = {
        "_plus_scalar": s + 1.5, "_minus_scalar": s - 0.25, "_rminus_scalar": 2 - s,
        "_mul_scalar": s * -3, "_div_scalar": s / 4, "_rdiv_scalar": 2 / s,
        "_power_scalar": s ** 2.5, "_rpower_scalar": 1.5 ** s,
        "_maximum_scalar": S.maximum(s, 1.2), "_minimum_scalar": S.minimum(s, 1.2),
        "_greater_scalar": s > 1.5, "_lesser_equal_scalar": s <= 1.5,
        "_equal_scalar": S.round(s) == 2, "_not_equal_scalar": S.round(s) != 2,
    }
    for op, out in scalar_ops.items():
        case(op.strip("_"), out, {"sc_x": sa})
    u, ua = var("un_x", (2, 6), 0.2, 3.0)
    for op in ("exp", "log", "sqrt", "rsqrt", "square", "abs", "negative", "reciprocal", "erf",
               "floor", "ceil", "round", "sign", "sin", "cos", "log1p", "expm1"):
        case(f"unary_{op}", getattr(S, op)(u), {"un_x": ua})

    t, ta = var("t_x", (2, 3, 4, 5))
    case("concat_dim2", S.Concat(t, t * 2, dim=2), {"t_x": ta})
    case("flatten", S.Flatten(t), {"t_x": ta})
    for name, shape, rev in (("reshape_0_m1", (0, -1), False), ("reshape_m2", (3, 2, -2), False),
                             ("reshape_m3", (-3, -3), False),
                             ("reshape_m4", (-4, 1, -1, 0, -2), False),
                             ("reshape_m3_m2", (0, -3, -2), False),
                             ("reshape_reverse", (-1, 0), True)):
        case(name, S.Reshape(t, shape=shape, reverse=rev), {"t_x": ta})
    case("transpose", S.transpose(t, axes=(2, 0, 3, 1)), {"t_x": ta})
    case("transpose_default", S.transpose(t), {"t_x": ta})
    case("swapaxes", S.SwapAxis(t, dim1=1, dim2=3), {"t_x": ta})
    case("expand_dims", S.expand_dims(t, axis=-2), {"t_x": ta})
    q, qa = var("sq_x", (2, 1, 3, 1))
    case("squeeze_axis", S.squeeze(q, axis=1), {"sq_x": qa})
    case("squeeze_all", S.squeeze(q), {"sq_x": qa})
    case("slice_steps", S.slice(t, begin=(None, 1, None, -1), end=(None, None, 1, None),
                                step=(None, 1, -2, -1)), {"t_x": ta})
    case("slice_axis", S.slice_axis(t, axis=-1, begin=1, end=-1), {"t_x": ta})
    case("slice_axis_none_end", S.slice_axis(t, axis=1, begin=-2, end=None), {"t_x": ta})
    parts = S.split(t, num_outputs=5, axis=3, squeeze_axis=True)
    case("split_squeeze", parts[1] * 2 + parts[4], {"t_x": ta})
    parts = S.SliceChannel(t, num_outputs=3, axis=1)
    case("slicechannel", parts[2] - parts[0], {"t_x": ta})
    case("clip", S.clip(t, a_min=-0.5, a_max=0.8), {"t_x": ta})
    case("softmax_temperature", S.softmax(t, axis=1, temperature=2.0), {"t_x": ta})
    case("log_softmax", S.log_softmax(t, axis=-1), {"t_x": ta})
    case("softmaxoutput_3d", S.SoftmaxOutput(S.Reshape(t, shape=(0, 0, -1)),
                                             S.var("softmax_label")), {"t_x": ta})
    case("softmaxoutput_multi", S.SoftmaxOutput(t, S.var("multi_label"), multi_output=True),
         {"t_x": ta})
    case("softmaxactivation_channel", S.SoftmaxActivation(t, mode="channel"), {"t_x": ta})
    case("dropout", S.Dropout(t, p=0.3) * 1.0, {"t_x": ta})
    case("blockgrad_copy", S.BlockGrad(t) + S._internal._copy(t), {"t_x": ta})
    case("zeros_ones_like", S.zeros_like(t) + S.ones_like(t) * 2 + t, {"t_x": ta})
    case("mean_axes_keepdims", S.mean(t, axis=(1, 3), keepdims=True), {"t_x": ta})
    case("sum_exclude", S.sum(t, axis=1, exclude=True), {"t_x": ta})
    case("max_all", S.max(t), {"t_x": ta})
    case("min_axis", S.min(t, axis=-1), {"t_x": ta})
    case("prod_axis", S.prod(t, axis=2), {"t_x": ta})
    case("norm", S.norm(t, axis=1), {"t_x": ta})
    case("cast_int", S.Cast(S.Cast(t * 3, dtype="int32"), dtype="float32"), {"t_x": ta})
    case("stack", S.stack(t, t * t, axis=1), {"t_x": ta})
    case("add_n", S.add_n(t, t * 2, t * 3), {"t_x": ta})
    case("broadcast_to", S.broadcast_to(S.slice_axis(t, axis=1, begin=0, end=1),
                                        shape=(0, 3, 0, 0)), {"t_x": ta})
    case("broadcast_axis", S.broadcast_axis(S.slice_axis(t, axis=2, begin=1, end=2), axis=2,
                                            size=3), {"t_x": ta})
    case("layernorm_axis1", S.LayerNorm(t, S.var("ln_g"), S.var("ln_b"), axis=1, eps=1e-3),
         {"t_x": ta}, {"ln_g": r.uniform(0.5, 1.5, 3).astype(np.float32),
                       "ln_b": r.standard_normal(3).astype(np.float32)})
    case("instancenorm", S.InstanceNorm(t, S.var("in_g"), S.var("in_b")), {"t_x": ta},
         {"in_g": r.uniform(0.5, 1.5, 3).astype(np.float32),
          "in_b": r.standard_normal(3).astype(np.float32)})
    for mode in ("instance", "channel", "spatial"):
        case(f"l2normalization_{mode}", S.L2Normalization(t, mode=mode), {"t_x": ta})
    case("upsampling_nearest", S.UpSampling(t, scale=2, sample_type="nearest"), {"t_x": ta})
    k = np.zeros((3, 1, 4, 4), np.float32)
    f = np.array([0.25, 0.75, 0.75, 0.25], np.float32)  # the bilinear kernel for scale 2
    k[:, 0] = np.outer(f, f)
    case("upsampling_bilinear", S.UpSampling(t, S.var("up_w"), scale=2, sample_type="bilinear",
                                             num_filter=3), {"t_x": ta}, {"up_w": k})
    case("pad_constant", S.Pad(t, mode="constant", pad_width=(0, 0, 0, 0, 1, 2, 2, 1),
                               constant_value=0.5), {"t_x": ta})
    case("pad_edge", S.Pad(t, mode="edge", pad_width=(0, 0, 0, 0, 2, 1, 0, 3)), {"t_x": ta})
    case("pad_reflect", S.Pad(t, mode="reflect", pad_width=(0, 0, 0, 0, 1, 2, 3, 1)),
         {"t_x": ta})
    m1, m1a = var("dot_a", (3, 4))
    m2, m2a = var("dot_b", (5, 4))
    case("dot_transpose_b", S.dot(m1, m2, transpose_b=True), {"dot_a": m1a, "dot_b": m2a})
    n1, n1a = var("dotn_a", (2, 3, 4))
    n2, n2a = var("dotn_b", (4, 2, 5))
    case("dot_nd", S.dot(n1, n2), {"dotn_a": n1a, "dotn_b": n2a})
    case("batch_dot_transpose_a", S.batch_dot(n1, n1, transpose_a=True), {"dotn_a": n1a})
    cnd, cnda = var("where_c", (2, 3, 4))
    case("where", S.where(cnd > 0, a, bb), {"where_c": cnda, "bin_a": aa, "bin_b": ba})
    rc, _rca = var("where_r", (2,))
    case("where_rows", S.where(rc > 0, a, bb), {"where_r": np.array([1, 0], np.float32),
                                                "bin_a": aa, "bin_b": ba})
    ids, _ = var("emb_ids", (2, 4))
    case("embedding", S.Embedding(ids, S.var("emb_w"), input_dim=10, output_dim=3),
         {"emb_ids": np.array([[0, 3, 9, 2.7], [5, 1, 1, 8]], np.float32)},
         {"emb_w": r.standard_normal((10, 3)).astype(np.float32)})
    case("take_clip", S.take(S.var("take_a"), S.var("take_i"), axis=1, mode="clip"),
         {"take_a": r.standard_normal((2, 5)).astype(np.float32),
          "take_i": np.array([0, 4, 7, -1, 2.9], np.float32)})
    case("take_wrap", S.take(S.var("take_b"), S.var("take_w"), axis=1, mode="wrap"),
         {"take_b": r.standard_normal((2, 5)).astype(np.float32),
          "take_w": np.array([0, 6, -1, -7, 12.5], np.float32)})
    small, sa2 = var("like_x", (2, 3, 1, 5))
    case("broadcast_like", S.broadcast_like(small, t), {"like_x": sa2, "t_x": ta})
    case("broadcast_like_axes", S.broadcast_like(small, t, lhs_axes=(2,), rhs_axes=(2,)),
         {"like_x": sa2, "t_x": ta})
    case("slice_like", S.slice_like(t, small, axes=(2,)), {"t_x": ta, "like_x": sa2})
    case("reshape_like", S.reshape_like(t, S.Reshape(t, shape=(6, 20))), {"t_x": ta})
    case("arange_repeat", S.broadcast_add(S.Reshape(t, shape=(-1,)),
                                          S.arange(1.5, 121.5, 2, repeat=2)), {"t_x": ta})
    case("zeros_ones_full", S.broadcast_add(S.broadcast_mul(t, S.ones((1, 3, 1, 1))),
                                            S.broadcast_add(S.zeros((2, 1, 4, 5)),
                                                            S.full((1, 1, 1, 5), 0.25))),
         {"t_x": ta})
    case("linear_regression_output", S.LinearRegressionOutput(t, S.var("lin_label")),
         {"t_x": ta})
    case("logistic_regression_output", S.LogisticRegressionOutput(t, S.var("log_label")),
         {"t_x": ta})
    case("softmaxactivation_instance", S.SoftmaxActivation(t), {"t_x": ta})
    up1, up1a = var("up1_x", (2, 3, 4, 4))
    up2, up2a = var("up2_x", (2, 2, 2, 2))
    case("upsampling_nearest_concat", S.UpSampling(up1, up2, scale=2, sample_type="nearest",
                                                   num_args=2), {"up1_x": up1a, "up2_x": up2a})
    case("upsampling_nearest_sum", S.UpSampling(up1, S.slice_axis(up1, axis=1, begin=0, end=3),
                                                scale=3, sample_type="nearest", num_args=2,
                                                multi_input_mode="sum"), {"up1_x": up1a})
    p1, p1a = var("prelu1_x", (2, 3, 4))
    case("leakyrelu_prelu_one_slope", S.LeakyReLU(p1, S.var("prelu1_g"), act_type="prelu"),
         {"prelu1_x": p1a}, {"prelu1_g": np.array([0.2], np.float32)})
    for op in ("log2", "log10"):
        case(f"unary_{op}", getattr(S, op)(u), {"un_x": ua})
    for op in ("cbrt", "trunc", "fix", "rint", "sigmoid", "tanh", "relu", "softsign", "arctan"):
        case(f"unary_{op}", getattr(S, op)(u - 1.5), {"un_x": ua})
    case("logical_not", S.logical_not(S.round(u) - 1), {"un_x": ua})
    case("hypot_scalar", S._internal._hypot_scalar(u, scalar=1.5), {"un_x": ua})
    case("broadcast_hypot", S.broadcast_hypot(a, c), {"bin_a": aa, "bc_c": ca})
    case("rdiv_rpower_mixed", (3 - u) / (2 ** (u - 1)), {"un_x": ua})
    for mode, hidden, gates in (("gru", 5, 3), ("rnn_tanh", 4, 1), ("rnn_relu", 4, 1)):
        width, steps, batch = 3, 4, 2
        xr, xra = var(f"{mode}_x", (steps, batch, width))
        hr, hra = var(f"{mode}_h", (2 * 1, batch, hidden))
        out = S.RNN(xr, S.var(f"{mode}_p"), hr, state_size=hidden, num_layers=1, mode=mode,
                    bidirectional=True)
        pw = (r.standard_normal(gates * hidden * 2 * (width + hidden + 2)) * 0.5
              ).astype(np.float32)
        case(f"rnn_{mode}_bidirectional", out,
             {f"{mode}_x": xra, f"{mode}_h": hra}, {f"{mode}_p": pw})
    return cases


# -- export and record ---------------------------------------------------------------------------
def save_io(path: Path, inputs: dict, outputs: list) -> None:
    arrays = {f"input.{k}": v for k, v in inputs.items()}
    arrays.update({f"output.{i}": o for i, o in enumerate(outputs)})
    np.savez_compressed(path, **arrays)


def gluon_names(inputs: dict) -> dict:
    """The inputs under the names Gluon's export gives them: data, or data0, data1, ..."""
    values = list(inputs.values())
    return {"data": values[0]} if len(values) == 1 else {
        f"data{i}": v for i, v in enumerate(values)}


def export_block(net: gluon.HybridBlock, name: str, out: Path, inputs: dict) -> list:
    net.hybridize(static_alloc=False)
    arrays = [mx.nd.array(v) for v in inputs.values()]
    res = net(*arrays)
    res = list(res) if isinstance(res, (list, tuple)) else [res]
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    net.export(str(d / name))
    return [o.asnumpy() for o in res]


def reload_outputs(d: Path, name: str, inputs: dict) -> list:
    """MXNet's own outputs of the files written (the reference the tests compare with)."""
    block = gluon.SymbolBlock.imports(str(d / f"{name}-symbol.json"), list(inputs),
                                      str(d / f"{name}-0000.params"))
    res = block(*[mx.nd.array(v) for v in inputs.values()])
    res = list(res) if isinstance(res, (list, tuple)) else [res]
    return [o.asnumpy() for o in res]


def scramble_fixed_gammas(d: Path, name: str) -> int:
    """BatchNorm with fix_gamma=True ignores gamma (and MXNet resets it to 1 as it runs): write
    other values into the file, so a frontend that read them would be caught."""
    symbol = json.loads((d / f"{name}-symbol.json").read_text())
    fixed = set()
    for n in symbol["nodes"]:
        if n["op"] == "BatchNorm" and n.get("attrs", {}).get("fix_gamma", "True") == "True":
            fixed.add(symbol["nodes"][n["inputs"][1][0]]["name"])
    if not fixed:
        return 0
    params = mx.nd.load(str(d / f"{name}-0000.params"))
    for key in params:
        if key.split(":", 1)[1] in fixed:
            params[key] = mx.nd.full(params[key].shape, 1.7)
    mx.nd.save(str(d / f"{name}-0000.params"), params)
    return len(fixed)


def check_informative(name: str, outs: list, classify: bool) -> dict:
    ref = outs[0].reshape(outs[0].shape[0], -1)
    spread = float(ref.std())
    assert spread > 1e-2, f"{name}: degenerate outputs (std {spread})"
    info = {"max_abs": float(np.abs(outs[0]).max()), "std": spread}
    if classify:
        top = np.sort(ref, axis=1)
        gap = float((top[:, -1] - top[:, -2]).min() / np.abs(ref).max())
        assert gap > 1e-3, f"{name}: top-1 margin {gap:.1e} of max|ref| is too small"
        info["top1"] = ref.argmax(1).tolist()
        info["top1_margin"] = gap
    return info


def make_zoo(name: str, out: Path) -> dict:
    ctor, size, batch, narrowed = ZOO[name]
    mx.random.seed(0)
    np.random.seed(0)
    net = ctor()
    he = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    net.initialize(he)
    net(mx.nd.array(photos(size)[:1]))  # materialize the deferred shapes
    for p in net.collect_params(".*weight").values():  # vgg's Dense layers ask for N(0, 0.01)
        p.initialize(he, force_reinit=True)
    calibrate(net, calibration_batch(size), seed=1)
    center_classifier(net)
    x = photos(size)[:batch] if batch > 1 else photos(size)[2:3]
    export_block(net, name, out, {"data": x})
    scrambled = scramble_fixed_gammas(out / name, name)
    outs = reload_outputs(out / name, name, {"data": x})
    save_io(out / name / f"{name}-io.npz", {"data": x}, outs)
    return {"kind": "classifier", "architecture": name, "width": narrowed,
            "inputs": {"data": list(x.shape)}, "fix_gamma_scrambled": scrambled,
            **check_informative(name, outs, True)}


def make_block(name: str, out: Path) -> dict:
    mx.random.seed(1)
    np.random.seed(1)
    r = np.random.RandomState(2)
    if name == "lstm":
        net, inputs, classify = LstmModel(), {"data": tokens(2, 12, 64)}, False
        desc = "Embedding, 2-layer bidirectional LSTM (NTC), GRU, ReLU RNN, Dense, log_softmax"
    elif name == "lstm_states":
        net = LstmWithStates()
        inputs = {"data": r.standard_normal((6, 2, 8)).astype(np.float32),
                  "h0": r.standard_normal((1, 2, 16)).astype(np.float32),
                  "c0": r.standard_normal((1, 2, 16)).astype(np.float32)}
        classify, desc = False, "LSTM with its initial states as inputs; out, hy, cy"
    else:
        net, classify = TransformerBlock(), True
        mask = np.ones((2, 10), np.float32)
        mask[1, 7:] = 0
        inputs = {"tokens": tokens(2, 10, 64), "mask": mask}
        desc = "BERT-style encoder layer (4 heads) with a padding mask, mean-pooled classifier"
    net.initialize(mx.init.Xavier(magnitude=2.5))
    net(*[mx.nd.array(v) for v in inputs.values()])
    for p in net.collect_params().values():  # Gluon starts biases and betas at 0: no test
        if p.name.endswith(("bias", "beta")):
            p.set_data(mx.nd.array(r.normal(0, 0.3, p.shape)))
    export_block(net, name, out, inputs)
    roles = {g: k for g, k in zip(gluon_names(inputs), inputs)}
    inputs = gluon_names(inputs)
    outs = reload_outputs(out / name, name, inputs)
    save_io(out / name / f"{name}-io.npz", inputs, outs)
    return {"kind": "classifier" if classify else "sequence", "description": desc,
            "inputs": {k: list(v.shape) for k, v in inputs.items()}, "input_roles": roles,
            **check_informative(name, outs, classify)}


def make_ops(out: Path, name: str) -> dict:
    from mxnet import symbol as S

    r = np.random.RandomState(3)
    cases = op_cases(r, native=name == "ops_native")
    inputs, params, names = {}, {}, []
    for case, _, ins, ps in cases:
        inputs.update(ins)
        params.update(ps)
        names.append(case)
    group = S.Group([S.identity(o, name=f"case_{n}") for n, o, _, _ in cases])
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}-symbol.json").write_text(group.tojson())
    args = set(group.list_arguments())
    aux = set(group.list_auxiliary_states())
    arg_arrays = {k: mx.nd.array(v) for k, v in {**inputs, **params}.items()
                  if k in args}
    aux_arrays = {k[4:]: mx.nd.array(v) for k, v in params.items() if k[4:] in aux}
    for label in args - set(arg_arrays):  # loss-layer labels: unused at inference
        shapes, _, _ = group.infer_shape_partial(**{k: v.shape for k, v in arg_arrays.items()})
        arg_arrays[label] = mx.nd.zeros(dict(zip(group.list_arguments(), shapes))[label])
    saved = {f"arg:{k}": mx.nd.array(v) for k, v in params.items() if not k.startswith("aux:")}
    saved.update({f"aux:{k[4:]}": mx.nd.array(v) for k, v in params.items()
                  if k.startswith("aux:")})
    mx.nd.save(str(d / f"{name}-0000.params"), saved)  # before running: fix_gamma resets gamma
    exe = group.bind(mx.cpu(), args=arg_arrays, aux_states=aux_arrays, grad_req="null")
    outs = [o.asnumpy() for o in exe.forward(is_train=False)]
    ordered = {k: inputs[k] for k in group.list_arguments() if k in inputs}
    save_io(d / f"{name}-io.npz", ordered, outs)
    return {"kind": "op_cases", "cases": names,
            "inputs": {k: list(v.shape) for k, v in ordered.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="models to make (default: all)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    everything = [*ZOO, "lstm", "lstm_states", "transformer", "ops", "ops_native"]
    names = args.names or everything
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name in names:
        if name == "ops_native" and os.environ.get("MXNET_MKLDNN_ENABLED") != "0":
            # MXNet 1.9.1's oneDNN kernels cannot run a Deconvolution with target_shape ("could
            # not create a descriptor for a dilated deconvolution") and take a 4-D
            # SoftmaxOutput over the wrong axis; its own CPU kernels get both right, but return
            # garbage for the RNN op. The switch is read once per process.
            subprocess.run([sys.executable, __file__, "--out", str(args.out), name], check=True,
                           env={**os.environ, "MXNET_MKLDNN_ENABLED": "0"})
            manifest = json.loads(manifest_path.read_text())
            continue
        if name in ZOO:
            entry = make_zoo(name, args.out)
        elif name in ("ops", "ops_native"):
            entry = make_ops(args.out, name)
        elif name in everything:
            entry = make_block(name, args.out)
        else:
            ap.error(f"unknown model {name}; known: {', '.join(everything)}")
        entry["mxnet"] = mx.__version__
        manifest[name] = entry
        size = sum(p.stat().st_size for p in (args.out / name).iterdir())
        print(f"{name}: {size / 1e6:.2f} MB, "
              f"{ {k: v for k, v in entry.items() if k not in ('cases',)} }", flush=True)
        manifest = {k: manifest[k] for k in everything if k in manifest}
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
