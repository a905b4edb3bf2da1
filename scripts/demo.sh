#!/usr/bin/env bash
# Install neo and run the end-to-end demo (train, compile for x86_64 and arm64, run both).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh
python3 -m pip install -q -e . scikit-learn
python3 examples/demo.py
