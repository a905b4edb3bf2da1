"""torchvision models through the PyTorch frontend compiled for arm64 and run under qemu-aarch64,
against PyTorch itself (issue: at least five models checked on arm64)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import require_module

from scripts.zoo import calibrated_model, compare, compile_and_run, trace_to

ARM64_MODELS = ["resnet18", "mobilenet_v2", "squeezenet1_1", "shufflenet_v2_x0_5", "mnasnet0_5"]


@pytest.mark.parametrize("name", ARM64_MODELS)
def test_torchvision_model_on_arm64(name, tmp_path, require_qemu):
    torch = require_module("torch")
    require_qemu("aarch64")
    model, size = calibrated_model(name)
    torch.manual_seed(1)
    x = torch.randn(1, 3, size, size)
    path = tmp_path / "model.pth"
    trace_to(model, x, path)
    with torch.no_grad():
        want = model(x).numpy()
    assert want.std() > 1e-2, f"{name}: the reference logits are degenerate"
    outs, info = compile_and_run(path, json.dumps([[1, 3, size, size]]), {"input0": x.numpy()},
                                 tmp_path, target="arm64")
    assert info["target"]["arch"] == "aarch64"
    err, top1 = compare(np.asarray(outs[0]), want)
    assert err <= 1e-4 and top1, f"{name} on arm64: max error {err:.2e} x max|ref|, top-1 {top1}"
