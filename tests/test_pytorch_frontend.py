"""The PyTorch frontend: models compiled and run against PyTorch, the CLI command Neo users type,
unsupported-op reports, and loading rules (no torch, no pickles).

Numerical checks follow the zoo's rule: max abs error <= 1e-4 * max|reference|, same top-1, and a
reference that is not degenerate.
"""
from __future__ import annotations

import builtins
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_module

from neo.errors import ModelLoadError, UnsupportedModelError, UsageError
from neo.frontends import FRONTENDS
from neo.frontends.pytorch import import_pytorch, inspect_pytorch, pytorch_model_inputs
from neo.run import run_artifact
from scripts.zoo import check_model, compare, compile_and_run

torch = require_module("torch")
nn = torch.nn

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4
# torch's deprecation notices for torch.jit and tracer warnings about Python-side shape checks
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning",
                                        "ignore::torch.jit.TracerWarning")


def trace(model: nn.Module, inputs: tuple, path: Path, *, no_grad: bool = True) -> Path:
    model.eval()
    if no_grad:
        with torch.no_grad():
            traced = torch.jit.trace(model, inputs, check_trace=False, strict=False)
    else:
        traced = torch.jit.trace(model, inputs, check_trace=False, strict=False)
    traced.save(str(path))
    return path


def reference(model: nn.Module, inputs: tuple) -> list[np.ndarray]:
    with torch.no_grad():
        out = model.eval()(*inputs)
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, torch.Tensor):
        out = [out]
    return [o.numpy() for o in out]


def assert_matches(got: list, want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        if w.dtype.kind != "f":
            np.testing.assert_array_equal(g, w)
            continue
        assert float(w.std()) > 1e-3, "degenerate reference: the check would prove nothing"
        err, top1 = compare(g, w)
        assert err <= TOLERANCE, f"max abs error {err:.2e} x max|ref|"
        if w.ndim == 2:
            assert top1


def compile_check(model: nn.Module, inputs: tuple, tmp_path: Path, *, shape_form: str = "list",
                  options: dict | None = None, no_grad: bool = True, suffix: str = ".pth"):
    """Trace (or export), compile for x86_64, run, compare with PyTorch; returns compile info."""
    path = tmp_path / f"model{suffix}"
    if suffix == ".pt2":
        torch.export.save(torch.export.export(model.eval(), inputs), str(path))
    else:
        trace(model, inputs, path, no_grad=no_grad)
    shapes = [list(x.shape) for x in inputs]
    shape_json = json.dumps(shapes if shape_form == "list" else
                            {f"input{i}": s for i, s in enumerate(shapes)})
    feeds = {f"input{i}": x.numpy() for i, x in enumerate(inputs)}
    outs, info = compile_and_run(path, shape_json, feeds, tmp_path,
                                 compiler_options=json.dumps(options) if options else None)
    assert_matches(outs, reference(model, inputs))
    return info


# -- models beyond vision --------------------------------------------------------------------------
class RecurrentEncoder(nn.Module):
    """A fixed-length sequence encoder: the last step of a 2-layer LSTM/GRU into a linear head."""

    def __init__(self, cell: str, bidirectional: bool = False):
        super().__init__()
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(12, 24, num_layers=2, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(24 * (2 if bidirectional else 1), 6)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class TwoInputs(nn.Module):
    """Two inputs of different ranks, a tuple of two outputs."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, features, image):
        pooled = self.conv(image).mean(dim=(2, 3))
        return self.fc(features) + pooled, torch.sigmoid(pooled) * 2


class TokenClassifier(nn.Module):
    """int64 token ids into an embedding; a dict of outputs."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.fc = nn.Linear(16, 3)

    def forward(self, ids):
        e = self.emb(ids)
        return {"logits": self.fc(e.mean(1)), "first_token": e[:, 0]}


class TokensAndWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 8)

    def forward(self, ids, weights):
        return (self.emb(ids) * weights.unsqueeze(-1)).sum(1)


def transformer_encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64,
                                       activation="gelu", batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)


def test_mlp(tmp_path):
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.GELU(), nn.Dropout(0.1),
                        nn.Linear(64, 10))
    compile_check(mlp, (torch.randn(4, 16),), tmp_path)


@pytest.mark.parametrize("cell,bidirectional", [("lstm", False), ("gru", True)])
def test_recurrent_encoder(tmp_path, cell, bidirectional):
    torch.manual_seed(0)
    compile_check(RecurrentEncoder(cell, bidirectional), (torch.randn(2, 6, 12),), tmp_path)


@pytest.mark.parametrize("no_grad", [True, False], ids=["fused-fast-path", "decomposed"])
def test_transformer_encoder(tmp_path, no_grad):
    # Traced under no_grad, PyTorch records its fused inference kernel
    # (aten::_transformer_encoder_layer_fwd); otherwise linear/sdpa/layer_norm/gelu.
    torch.manual_seed(0)
    compile_check(transformer_encoder(), (torch.randn(2, 10, 32),), tmp_path, no_grad=no_grad)


def test_two_inputs_tuple_output(tmp_path):
    torch.manual_seed(0)
    info = compile_check(TwoInputs(), (torch.randn(2, 8), torch.randn(2, 3, 6, 6)), tmp_path,
                         shape_form="dict")
    assert [i["name"] for i in info["inputs"]] == ["input0", "input1"]
    assert [o["name"] for o in info["outputs"]] == ["output0", "output1"]


def test_int64_tokens_dict_output(tmp_path):
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 9))
    info = compile_check(TokenClassifier(), (ids,), tmp_path, options={"dtype": "int64"})
    assert info["inputs"][0]["dtype"] == "int64"
    assert [o["name"] for o in info["outputs"]] == ["logits", "first_token"]


def test_per_input_dtype(tmp_path):
    torch.manual_seed(0)
    inputs = (torch.randint(0, 30, (3, 5)), torch.rand(3, 5))
    info = compile_check(TokensAndWeights(), inputs, tmp_path,
                         options={"dtype": {"input0": "int64"}})
    assert [i["dtype"] for i in info["inputs"]] == ["int64", "float32"]


def test_exported_program(tmp_path):
    torch.manual_seed(0)
    compile_check(TwoInputs(), (torch.randn(2, 8), torch.randn(2, 3, 6, 6)), tmp_path,
                  suffix=".pt2")
    shapes = pytorch_model_inputs(tmp_path / "model.pt2")
    assert shapes == [("input0", (2, 8), "float32"), ("input1", (2, 3, 6, 6), "float32")]


# -- converters one by one, against PyTorch (IR interpreter: fast, no compilation) -----------------
class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


class LSTMWithState(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 4, bidirectional=True)

    def forward(self, x):
        return self.lstm(x, (torch.ones(2, 5, 4), torch.zeros(2, 5, 4)))[1][1]


def _op_cases() -> dict:
    F = nn.functional
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    x4, x3 = r(2, 3, 8, 8), r(2, 5, 6)
    w3, b3, m55, w1, b4, w4, w5, wt = (r(3), r(3), r(5, 5), r(4, 5, 3), r(4), r(4, 3, 4, 4),
                                       r(2, 3, 2, 3, 3), r(3, 2, 3, 3))
    bool_mask = torch.rand(5, 5, generator=g) > 0.3
    return {
        "roll": (lambda x: torch.roll(x, (1, -2), (2, 3)), x4),
        "flip": (lambda x: torch.flip(x, (1, 3)), x4),
        "repeat": (lambda x: x.repeat(2, 1, 3), x3),
        "split": (lambda x: torch.split(x, 2, 1)[2] * 2, x3),
        "chunk_unbind": (lambda x: x.chunk(3, 2)[1] + x.unbind(2)[0].unsqueeze(-1), x3),
        "index_select": (lambda x: x.index_select(1, torch.tensor([4, 0, 2])), x3),
        "cumsum": (lambda x: x.cumsum(-1), x3),
        "einsum": (lambda x: torch.einsum("bij,bkj->bik", x, x), x3),
        "var_std": (lambda x: x.var(1, keepdim=True) + x.std(-1, unbiased=False, keepdim=True),
                    x3),
        "normalize": (lambda x: F.normalize(x, dim=-1), x3),
        "group_norm": (lambda x: F.group_norm(x, 3, w3, b3), x4),
        "instance_norm": (lambda x: F.instance_norm(x), x4),
        "adaptive_avg_5x3": (lambda x: F.adaptive_avg_pool2d(x, (5, 3)), x4),
        "adaptive_max_4": (lambda x: F.adaptive_max_pool2d(x, 4), x4),
        "avg_pool_ceil": (lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), x4),
        "avg_pool_exclude_pad": (lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), x4),
        "max_pool_ceil": (lambda x: F.max_pool2d(x, 3, 2, 0, ceil_mode=True), x4),
        "pad_modes": (lambda x: F.pad(x, (1, 2, 0, 1), mode="reflect")
                      + F.pad(x, (1, 2, 0, 1), mode="replicate"), x4),
        "pad_constant": (lambda x: F.pad(x, (1, 2, 3, 0), value=0.5), x4),
        "upsample_nearest": (lambda x: F.interpolate(x, scale_factor=2, mode="nearest"), x4),
        "upsample_bilinear": (lambda x: F.interpolate(x, size=(11, 13), mode="bilinear"), x4),
        "upsample_align_corners": (lambda x: F.interpolate(x, scale_factor=1.5, mode="bilinear",
                                                           align_corners=True), x4),
        "pixel_shuffle": (lambda x: F.pixel_shuffle(torch.cat([x, x, x, x], 1), 2), x4),
        "channel_shuffle": (lambda x: F.channel_shuffle(torch.cat([x, x], 1), 2), x4),
        "activations": (lambda x: F.softplus(x, 2.0) + F.elu(x, 0.5) + F.leaky_relu(x, 0.2)
                        + F.hardtanh(x, -0.5, 0.5) + F.mish(x) + F.selu(x) + F.relu6(x)
                        + F.hardsigmoid(x) + F.hardswish(x) + F.silu(x)
                        + F.gelu(x, approximate="tanh"), x4),
        "clamp_tensors": (lambda x: torch.clamp(x, min=torch.zeros(8), max=torch.ones(8)), x4),
        "division": (lambda x: torch.div(x, 0.3, rounding_mode="floor")
                     + torch.div(x, 0.3, rounding_mode="trunc") + x % 0.7 + torch.fmod(x, 0.7),
                     x4),
        "pow": (lambda x: x.abs() ** 1.5 + x ** 2 + 2 ** x, x4),
        "where_masked_fill": (lambda x: torch.where(x > 0, x, 0.1 * x).masked_fill(x < -1, 3.0),
                              x4),
        "compare_logic": (lambda x: ((x > 0) & (x < 1) | (x == 0)).float()
                          + (x != 0.5).float(), x4),
        "sdpa_causal": (lambda x: F.scaled_dot_product_attention(x, x, x, is_causal=True), x3),
        "sdpa_float_mask": (lambda x: F.scaled_dot_product_attention(x, x * 2, x, attn_mask=m55),
                            x3),
        "sdpa_bool_mask": (lambda x: F.scaled_dot_product_attention(x, x, x, attn_mask=bool_mask),
                           x3),
        "conv1d": (lambda x: F.conv1d(x, w1, b4, padding=1, stride=2), x3),
        "conv_same": (lambda x: F.conv2d(x, w4, padding="same"), x4),
        "conv3d": (lambda x: F.conv3d(x.unsqueeze(2).repeat(1, 1, 3, 1, 1), w5), x4),
        "conv_transpose": (lambda x: F.conv_transpose2d(x, wt, stride=2, padding=1,
                                                        output_padding=1), x4),
        "stack_movedim": (lambda x: torch.stack([x, x * 2], 1).movedim(1, -1), x3),
        "squeeze_expand": (lambda x: x[:, :1].squeeze(1).unsqueeze(0).expand(3, 2, 6)
                           + x.narrow(1, 1, 1).squeeze(), x3),
        "mm_addmm": (lambda x: x[0] @ x[0].t() + torch.addmm(torch.ones(5), x[1], x[1].T), x3),
        "bmm_baddbmm": (lambda x: torch.bmm(x, x.transpose(1, 2)) + torch.baddbmm(
            torch.ones(5, 5), x, x.transpose(1, 2), beta=0.5, alpha=2), x3),
        "reductions": (lambda x: x.sum() + x.mean((1, 2)).sum() + x.amax(1).sum()
                       + x.amin(-1).sum() + x.max() + x.prod(-1).sum(), x3),
        "softmaxes": (lambda x: F.log_softmax(x, 1) + F.softmax(x, 0), x3),
        "flatten_view_permute": (lambda x: x.flatten(1).view(2, 3, -1).permute(2, 0, 1)
                                 .reshape(-1, 6).contiguous(), x4),
        "unflatten": (lambda x: x.unflatten(2, (2, 3)), x3),
        "dtype_conversions": (lambda x: (x * 10).to(torch.int64).float() / 3 + x.type_as(x), x3),
        "rsub": (lambda x: 1 - x + torch.rsub(x, 2.0, alpha=3), x3),
        "size_arithmetic": (lambda x: x.view(x.size(0) * x.size(1), -1) / x.shape[-1], x3),
        "rnn_tanh": (nn.RNN(6, 4, batch_first=True), x3),
        "lstm_bidirectional_state": (LSTMWithState(), x3),
        "multihead_attention": (nn.MultiheadAttention(6, 2, batch_first=True), (x3, x3, x3)),
    }


OP_CASES = _op_cases()


@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_converter(tmp_path, name):
    from neo.ir.interpreter import interpret
    from neo.ir.verify import verify

    fn, inputs = OP_CASES[name]
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    model = fn if isinstance(fn, nn.Module) else Fn(fn)
    path = trace(model, inputs, tmp_path / "m.pth")
    g = import_pytorch(path, {f"input{i}": tuple(x.shape) for i, x in enumerate(inputs)})
    verify(g)
    got = interpret(g, {f"input{i}": x.numpy() for i, x in enumerate(inputs)})
    for a, b in zip(got, reference(model, inputs)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_scripted_module_without_control_flow(tmp_path):
    class Scripted(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return nn.functional.relu(self.fc(x)) * 2  # relu's `if inplace:` is a constant

    torch.jit.script(Scripted()).save(str(tmp_path / "m.pth"))
    from neo.ir.interpreter import interpret

    x = torch.randn(2, 4)
    g = import_pytorch(tmp_path / "m.pth", {"input0": (2, 4)})
    want = torch.jit.load(str(tmp_path / "m.pth"))(x).detach().numpy()
    np.testing.assert_allclose(interpret(g, {"input0": x.numpy()})[0], want, rtol=1e-5)


@pytest.mark.parametrize("make", [lambda: SmallCNN(), transformer_encoder], ids=["cnn", "encoder"])
def test_exported_program_in_core_aten(tmp_path, make):
    """After run_decompositions: convolution, _native_batch_norm_legit_no_training,
    max_pool2d_with_indices (indices unused), addmm, the math form of attention."""
    from neo.ir.interpreter import interpret

    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(1, 3, 32, 32) if isinstance(model, SmallCNN) else torch.randn(2, 10, 32)
    ep = torch.export.export(model, (x,)).run_decompositions()
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    g = import_pytorch(tmp_path / "m.pt2")
    got = interpret(g, {"input0": x.numpy()})
    np.testing.assert_allclose(got[0], reference(model, (x,))[0], rtol=1e-4, atol=1e-5)


# -- the command Neo users type --------------------------------------------------------------------
class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@pytest.mark.parametrize("target", ["x86_64", "arm64"])
def test_cli_verbatim_command(tmp_path, target, require_qemu):
    if target == "arm64":
        require_qemu("aarch64")  # fails in CI when qemu is missing, skips elsewhere
    torch.manual_seed(0)
    model = SmallCNN()
    x = torch.randn(1, 3, 224, 224)
    trace(model, (x,), tmp_path / "model.pth")
    command = f"neo compile --framework pytorch --shape '[[1,3,224,224]]' --target {target}"
    argv = shlex.split(command)
    if shutil.which("neo") is None:  # not installed: the same CLI through its module
        argv = [sys.executable, "-m", "neo", *argv[1:]]
    r = subprocess.run(argv, check=False, cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    art = next(p for p in tmp_path.iterdir() if (p / "compiled.meta").exists())
    names, outs, info = run_artifact(art, {"input0": x.numpy()})
    assert names == ["output0"]
    assert info["emulated"] == (target == "arm64")
    assert_matches(outs, reference(model, (x,)))


# -- torchvision: a representative subset of the zoo (scripts/zoo.py runs all of them) -------------
# residual, depthwise + relu6, hardswish + squeeze-excite, fire modules + ceil-mode pooling,
# channel shuffle, mnasnet, silu + stochastic depth, grouped convs, layer norm + gelu, windowed
# attention with shifted windows (roll, masks, relative position bias)
ZOO_SUBSET = ["resnet18", "mobilenet_v2", "mobilenet_v3_small", "squeezenet1_1",
              "shufflenet_v2_x0_5", "mnasnet0_5", "efficientnet_b0", "regnet_y_400mf",
              "convnext_tiny", "swin_t"]


@pytest.mark.parametrize("name", ZOO_SUBSET)
def test_torchvision_model(tmp_path, name):
    require_module("torchvision")
    r = check_model(name, tmp_path)
    assert r.status == "pass", f"{name}: {r.status} {r.detail} (error {r.error})"


# -- unsupported ops -------------------------------------------------------------------------------
class Unsupported(nn.Module):
    def forward(self, x):
        a = torch.cumprod(x, 1)  # line A
        b = torch.sort(x, 1)[0]
        c = torch.cumprod(a, 1)
        return a + b + c + torch.topk(x, 2, 1)[0].sum()


def _line_of(text: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_every_unsupported_op_listed_at_once(tmp_path):
    path = trace(Unsupported(), (torch.randn(2, 5),), tmp_path / "m.pth")
    with pytest.raises(UnsupportedModelError) as e:
        import_pytorch(path, {"input0": (2, 5)})
    ops = {op.op_type: op for op in e.value.ops}
    assert set(ops) == {"aten::cumprod", "aten::sort", "aten::topk"}
    assert ops["aten::cumprod"].count == 2
    assert ops["aten::cumprod"].first_node_names == ["cumprod", "cumprod#1"]
    assert ops["aten::cumprod"].source_location == f"{__file__}:{_line_of('# line A')}"
    assert "aten::topk (1 node" in str(e.value)
    info = inspect_pytorch(path)
    assert {u["op_type"] for u in info["unsupported"]} == set(ops)


def test_constant_subgraphs_need_no_converter(tmp_path):
    class Masked(nn.Module):
        def forward(self, x):
            mask = x.new_zeros(x.shape[-2:])  # built from shapes only: evaluated by torch
            mask[1:, :2] = torch.cumprod(torch.ones(2), 0)[0]
            return x + mask

    x = torch.randn(1, 4, 3)
    path = trace(Masked(), (x,), tmp_path / "m.pth")
    g = import_pytorch(path, {"input0": (1, 4, 3)})
    from neo.ir.interpreter import interpret

    np.testing.assert_allclose(interpret(g, {"input0": x.numpy()})[0], Masked()(x).numpy())


def test_inplace_write_into_a_view_is_reported(tmp_path):
    class ViewWrite(nn.Module):
        def forward(self, x):
            y = x * 2
            y[:, 0] += 1  # writes through a view of y
            return y

    class BufferWrite(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("state", torch.zeros(2, 3))

        def forward(self, x):
            self.state.add_(x)  # state kept between calls
            return self.state * 2

    for model, what in ((ViewWrite(), "shares storage"), (BufferWrite(), "parameter or buffer")):
        path = trace(model, (torch.randn(2, 3),), tmp_path / "m.pth")
        with pytest.raises(UnsupportedModelError, match=what):
            import_pytorch(path, {"input0": (2, 3)})


# -- inputs, shapes and options --------------------------------------------------------------------
def test_shapes_are_needed_and_checked(tmp_path):
    path = trace(TwoInputs(), (torch.randn(2, 8), torch.randn(2, 3, 6, 6)), tmp_path / "m.pth")
    assert [n for n, _, _ in FRONTENDS["pytorch"].inputs(path)] == ["input0", "input1"]
    with pytest.raises(UsageError, match="input1 needs a static shape"):
        import_pytorch(path, {"input0": (2, 8)})
    with pytest.raises(UsageError, match="does not have"):
        import_pytorch(path, {"input0": (2, 8), "input1": (2, 3, 6, 6)},
                       options={"dtype": {"input7": "int64"}})


# -- loading rules ---------------------------------------------------------------------------------
def test_without_torch_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    path.write_bytes(b"not read")
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ModelLoadError) as e:
        import_pytorch(path, {"input0": (1, 3)})
    assert "pip install 'neo-compiler[pytorch]'" in (e.value.hint or "")


class _Boom:
    """Unpickling this runs code: it must never happen."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    torch.save({"x": _Boom(marker), "w": torch.ones(2)}, tmp_path / "model.pth")
    with pytest.raises(ModelLoadError, match="torch.save checkpoint"):
        import_pytorch(tmp_path / "model.pth", {"input0": (1,)})
    (tmp_path / "plain.pt").write_bytes(pickle.dumps(_Boom(marker)))
    with pytest.raises(ModelLoadError, match="not a TorchScript"):
        import_pytorch(tmp_path / "plain.pt", {"input0": (1,)})
    assert not marker.exists()


def test_pt2_pickles_are_checked_before_loading(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(nn.Linear(3, 2), (torch.randn(1, 3),)), str(path))
    bad = tmp_path / "bad.pt2"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if "/data/sample_inputs/" in item.filename:
                data = pickle.dumps(_Boom(marker))
            dst.writestr(item, data)
    with pytest.raises(ModelLoadError, match="weights-only"):
        import_pytorch(bad, {"input0": (1, 3)})
    assert not marker.exists()
    import_pytorch(path, {"input0": (1, 3)})  # the untouched archive loads
