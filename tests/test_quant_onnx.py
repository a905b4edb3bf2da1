"""Pre-quantized ONNX models from onnxruntime's own quantizer (`quantize_static`), in both formats:
QDQ (QuantizeLinear/DequantizeLinear around float ops, lowered by passes/qdq.py) and QOperator
(QLinearConv, com.microsoft QLinearAdd, QLinearConcat, QGemm ...). They compile onto the integer
ops (no float conv or matmul left) and their outputs stay within one quantization step of
onnxruntime's on real-looking inputs (a photo's patches), for uint8 and int8 activations, per
channel and per tensor weights, and uint8 weights with zero points.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_module


def _net(torch):
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 16, 3, padding=1)
            self.c2 = nn.Conv2d(16, 24, 3, padding=1, stride=2)
            self.c3 = nn.Conv2d(24, 24, 1)
            self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)
            self.c4 = nn.Conv2d(48, 32, 3, padding=1)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            y = torch.relu(self.c1(x))
            y = nn.functional.max_pool2d(y, 2)
            y = torch.relu(self.c2(y))
            z = torch.relu(self.c3(y)) + y  # residual add
            z = torch.relu(self.dw(z))
            z = torch.cat([z, y], 1)
            z = torch.relu(self.c4(z))
            z = nn.functional.adaptive_avg_pool2d(z, 1).flatten(1)
            return self.fc(z)

    torch.manual_seed(0)
    return Net().eval()


def _photo_patches(n: int, seed: int) -> list[np.ndarray]:
    """32x32 patches of scikit-image photos, normalized like ImageNet inputs."""
    from skimage import data

    imgs = [data.astronaut(), data.chelsea(), data.coffee()]
    r = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = imgs[i % 3]
        y, x = r.integers(0, img.shape[0] - 64), r.integers(0, img.shape[1] - 64)
        patch = img[y:y + 64:2, x:x + 64:2].astype(np.float32) / 255.0
        patch = (patch - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        out.append(np.ascontiguousarray(patch.transpose(2, 0, 1)[None]).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def fp32_model(tmp_path_factory):
    torch = require_module("torch")
    path = tmp_path_factory.mktemp("qonnx") / "net.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_net(torch), torch.zeros(1, 3, 32, 32), str(path),
                          input_names=["input"], output_names=["out"], opset_version=13,
                          dynamo=False)
    return path


FORMATS = [  # (format, activations, weights, per channel)
    ("QDQ", "QUInt8", "QInt8", True),
    ("QOperator", "QUInt8", "QInt8", True),
    ("QDQ", "QInt8", "QInt8", False),
    ("QOperator", "QInt8", "QInt8", True),
    ("QOperator", "QUInt8", "QUInt8", False),
]


@pytest.mark.parametrize("fmt,act,wt,per_channel", FORMATS,
                         ids=["-".join(map(str, f)) for f in FORMATS])
def test_quantize_static_model_matches_onnxruntime(fmt, act, wt, per_channel, fp32_model,
                                                   tmp_path):
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from neo.compiler import CompileOptions, compile_model
    from neo.runtime import Model

    calib = _photo_patches(16, 1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    qpath = tmp_path / "q.onnx"
    quantize_static(str(fp32_model), str(qpath), Reader(),
                    quant_format=getattr(QuantFormat, fmt),
                    activation_type=getattr(QuantType, act), weight_type=getattr(QuantType, wt),
                    per_channel=per_channel)
    out_scale = _output_scale(onnx.load(str(qpath)))
    compile_model(CompileOptions(framework="onnx", shape='{"input":[1,3,32,32]}', target="host",
                                 output=tmp_path / "a", model=str(qpath), use_cache=False))
    ops = [n["op"] for n in json.loads((tmp_path / "a" / "compiled_model.json").read_text())
           ["nodes"]]
    assert sum("conv_integer" in o for o in ops) == 5, ops
    assert not any(o.split("+")[0] in ("conv", "matmul") for o in ops), ops
    sess = ort.InferenceSession(str(qpath), providers=["CPUExecutionProvider"])
    worst = 0.0
    with Model(tmp_path / "a") as m:
        for x in _photo_patches(24, 2):
            want = sess.run(None, {"input": x})[0]
            got = m.run(x)[0]
            assert np.ptp(want) > 10 * out_scale  # informative outputs
            worst = max(worst, float(np.abs(got - want).max()) / out_scale)
    assert worst <= 1.0 + 1e-3, f"{worst:.2f} quantization steps from onnxruntime"


def _output_scale(model) -> float:
    """The scale of the last quantized tensor before the float output."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in reversed(model.graph.node):
        if n.op_type == "DequantizeLinear":
            return float(inits[n.input[1]])
        if n.op_type == "QGemm" and len(n.input) > 7:
            return float(inits[n.input[7]])
    raise AssertionError("no output scale")
