"""`neo compile --quantize int8` on torchvision CNNs (resnet18, mobilenet_v2, squeezenet1_1): top-1
agreement with the fp32 model (onnxruntime) on 64 inputs at least 95%, and the output's SQNR
reported (printed with -s; in docs/QUANTIZATION.md) and checked against a floor.

No pretrained weights can be fetched here, so each network gets random weights, BatchNorm
statistics of photo crops (the inputs' distribution, as a trained network's statistics are) and
a classifier head trained (features frozen) to tell which of six scikit-image photos a crop comes
from. A random network's own top-1 rests on margins of a tenth of its logits' spread, which any
rounding flips; the trained head decides as trained networks do. mobilenet_v2's random features
separate the photos poorly, so its top-1 stays fragile: there the check is parity with
onnxruntime's quantize_static on the same model (PARITY_ONLY).

Kept cheap for CI: 96x96 inputs in batches of 16, 32 calibration crops (2 samples), the 64 test
crops (4 runs) also given as --validation so that neo's own report covers them.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import _TORCHVISION_FIXUPS, require_module

SIZE, BATCH, RUNS = 96, 16, 4  # 64 test inputs
MODELS = ["resnet18", "mobilenet_v2", "squeezenet1_1"]
# A random-weight MobileNetV2 with BatchNorm statistics is chaotic: it amplifies small input
# changes (noise at 60 dB SQNR on the input flips 8% of its top-1s; resnet18 keeps all at 30 dB),
# and its top-1 rests on margins of 3% of its logits' spread. Rounding only its *input* to uint8,
# the first thing any int8 scheme does, already flips 19% of its top-1s (81% agreement), so no
# int8 quantizer can reach the 95% bar on it: neo's int8 and onnxruntime's quantize_static agree
# with fp32 on ~70% alike. There the check is parity with onnxruntime's int8 (top-1 agreement
# within 5 points, SQNR within 1 dB), and the test asserts that the input rounding alone misses
# the bar (if a change of fixture makes the network sane, it fails and says to drop this).
PARITY_ONLY = {"mobilenet_v2"}
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def _photo_crops(n: int, seed: int) -> np.ndarray:
    """n [3, SIZE, SIZE] crops (2x downsampled) of scikit-image photos, ImageNet-normalized."""
    from skimage import data

    imgs = [getattr(data, p)() for p in _PHOTOS]
    r = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = imgs[i % len(imgs)]
        y = r.integers(0, img.shape[0] - 2 * SIZE)
        x = r.integers(0, img.shape[1] - 2 * SIZE)
        p = img[y:y + 2 * SIZE:2, x:x + 2 * SIZE:2].astype(np.float32) / 255.0
        p = (p - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        out.append(p.transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def _calibrate_batchnorm_on_photos(torch, model) -> None:
    """BatchNorm statistics of 3 batches of 16 photo crops (other crops than the calibration and
    test ones): the inputs' distribution, as a trained network's statistics are. (Statistics of
    white noise leave a random MobileNetV2's channels so unequal in range that per-tensor int8
    loses most of the signal: onnxruntime's quantize_static agrees on 34% of top-1s there.)"""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.momentum = None
        bn.reset_running_stats()
    model.train()
    with torch.no_grad():
        for i in range(3):
            model(torch.from_numpy(_photo_crops(BATCH, 100 + i)))
    model.eval()


def _train_head(torch, model, name: str) -> None:
    """Train the classifier head (features frozen) to tell which photo a crop comes from, on 192
    crops other than the test ones: a random network's top-1 is decided by margins of a tenth of
    the logits' spread, which any rounding flips; a trained head decides as trained networks do."""
    head = model.fc if name.startswith("resnet") else model.classifier
    feats = []
    hook = head.register_forward_pre_hook(lambda _, args: feats.append(args[0].detach()))
    n = 192
    x = _photo_crops(n, 50)
    with torch.no_grad():
        for i in range(0, n, 48):
            model(torch.from_numpy(x[i:i + 48]))
    hook.remove()
    f, y = torch.cat(feats), torch.from_numpy(np.arange(n) % len(_PHOTOS))
    opt = torch.optim.Adam(head.parameters(), 1e-2)
    head.train()
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(f).flatten(1), y).backward()
        opt.step()
    model.eval()


def _export(name: str, path: Path) -> None:
    torch = require_module("torch")
    torchvision = require_module("torchvision")
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    _calibrate_batchnorm_on_photos(torch, model)
    if name in _TORCHVISION_FIXUPS:
        _TORCHVISION_FIXUPS[name](model)
    model.eval()
    _train_head(torch, model, name)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(BATCH, 3, SIZE, SIZE), str(path),
                          input_names=["input"], output_names=["output"], dynamo=False,
                          opset_version=17)


def _sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2)))


def _input_rounding_agreement(model: Path, tmp_path: Path, x: np.ndarray, ref: np.ndarray
                              ) -> float:
    """Top-1 agreement with fp32 of the fp32 model on its inputs rounded to uint8 over the
    calibration crops' range (what every int8 scheme's first quantize does), nothing else."""
    from conftest import ort_outputs

    c = np.load(tmp_path / "calib.npz")["input"]
    lo, hi = min(float(c.min()), 0.0), max(float(c.max()), 0.0)
    scale = (hi - lo) / 255
    zp = np.rint(-lo / scale)
    xq = ((np.clip(np.rint(x / scale) + zp, 0, 255) - zp) * scale).astype(np.float32)
    got = np.concatenate([ort_outputs(model, {"input": xb})["output"] for xb in xq])
    return float((got.argmax(1) == ref.argmax(1)).mean())


def _onnxruntime_int8(model: Path, tmp_path: Path, x: np.ndarray, ref: np.ndarray
                      ) -> tuple[float, float]:
    """Top-1 agreement and SQNR of onnxruntime's quantize_static model (QDQ, uint8 activations,
    int8 per-channel weights, the same calibration crops) against fp32 on the same inputs."""
    from conftest import ort_outputs
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    calib = iter(np.load(tmp_path / "calib.npz")["input"])

    class Reader(CalibrationDataReader):
        def get_next(self):
            xb = next(calib, None)
            return None if xb is None else {"input": xb}

    q = tmp_path / "ort-int8.onnx"
    quantize_static(str(model), str(q), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    got = np.concatenate([ort_outputs(q, {"input": xb})["output"] for xb in x])
    return float((got.argmax(1) == ref.argmax(1)).mean()), _sqnr_db(ref, got)


@pytest.mark.parametrize("name", MODELS)
def test_torchvision_int8_top1_agrees_with_fp32(name, tmp_path):
    from conftest import ort_outputs

    from neo.compiler import CompileOptions, compile_model
    from neo.runtime import Model

    model = tmp_path / f"{name}.onnx"
    _export(name, model)
    x = _photo_crops(BATCH * RUNS, 7).reshape(RUNS, BATCH, 3, SIZE, SIZE)
    np.savez(tmp_path / "calib.npz", input=_photo_crops(2 * BATCH, 1).reshape(2, BATCH, 3,
                                                                                 SIZE, SIZE))
    np.savez(tmp_path / "test.npz", input=x)
    res = compile_model(CompileOptions(
        framework="onnx", shape=json.dumps({"input": [BATCH, 3, SIZE, SIZE]}), target="host",
        output=tmp_path / "int8", model=str(model), use_cache=False, quantize="int8",
        calibration=tmp_path / "calib.npz", validation=tmp_path / "test.npz"))
    ops = [n["op"] for n in json.loads((tmp_path / "int8" / "compiled_model.json").read_text())
           ["nodes"]]
    assert sum(op.startswith("conv_integer") for op in ops) >= 8, ops

    ref = np.concatenate([ort_outputs(model, {"input": xb})["output"] for xb in x])
    with Model(tmp_path / "int8") as m:
        got = np.concatenate([m.run(xb)[0] for xb in x])
    top_ref, top_got = ref.argmax(1), got.argmax(1)
    agreement = float((top_ref == top_got).mean())
    sqnr = _sqnr_db(ref, got)
    report = res["precision"]["outputs"]["output"]
    print(f"\n{name} int8 ({SIZE}x{SIZE}, {len(ref)} inputs, {len(set(top_ref))} fp32 classes): "
          f"top-1 agreement {agreement:.3f}, SQNR {sqnr:.1f} dB (against onnxruntime fp32); "
          f"neo's report: {report}")
    assert len(set(top_ref)) >= 4, "the fp32 network gives nearly every input the same class"
    if name in PARITY_ONLY:
        ort_agreement, ort_sqnr = _onnxruntime_int8(model, tmp_path, x, ref)
        print(f"{name}: onnxruntime quantize_static: top-1 agreement {ort_agreement:.3f}, SQNR "
              f"{ort_sqnr:.1f} dB")
        assert agreement >= ort_agreement - 0.05 and sqnr >= ort_sqnr - 1.0, (
            name, agreement, sqnr, ort_agreement, ort_sqnr)
        rounded = _input_rounding_agreement(model, tmp_path, x, ref)
        print(f"{name}: fp32 on uint8-rounded inputs alone: top-1 agreement {rounded:.3f}")
        assert rounded < 0.95, (f"{name}: rounding only the input keeps {rounded:.3f} of the "
                                "top-1s: the 95% bar is reachable, remove it from PARITY_ONLY")
    else:
        assert agreement >= 0.95, (name, agreement, sqnr)
    assert sqnr > 20, (name, sqnr)
    # neo's report (against neo's fp32 on the same 64 inputs) tells the same story
    assert abs(report["top1_agreement"] - agreement) <= 0.05, report
    assert abs(report["sqnr_db"] - sqnr) < 3, report
