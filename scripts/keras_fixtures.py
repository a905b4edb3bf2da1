"""Write the small committed Keras fixtures of tests/test_keras.py (tests/data/keras/).

They let the Keras frontend be tested where neither TensorFlow nor Keras is installed (the reader
needs only h5py): a CNN and a text classifier (tests/keras_models.py) saved by Keras 3 as `.keras`
and `.h5`, and by Keras 2 (tf-keras) as `.h5`, with inputs and Keras's outputs in expected.npz.

    pip install tensorflow-cpu tf-keras
    python scripts/keras_fixtures.py
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import keras
import tensorflow as tf
import tf_keras
from keras_models import image_batch, nhwc, small_cnn, text_classifier, token_batch

OUT = ROOT / "tests" / "data" / "keras"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    expected: dict[str, np.ndarray] = {}
    images = image_batch(7, 2, 16, "smooth")
    tokens = token_batch(7, 2)
    expected["image"] = images
    expected["tokens"] = tokens
    keras.utils.set_random_seed(0)
    tf_keras.utils.set_random_seed(0)
    for lib, suffix in ((keras, "k3"), (tf_keras, "k2")):
        cnn = small_cnn(lib, tf)
        text = text_classifier(lib)
        cnn_out = np.asarray(cnn(nhwc(images), training=False))
        text_out = np.asarray(text(tokens, training=False))
        if lib is keras:
            cnn.save(OUT / "small_cnn.keras")
            text.save(OUT / "text.keras")
        cnn.save(OUT / f"small_cnn_{suffix}.h5")
        text.save(OUT / f"text_{suffix}.h5")
        expected[f"small_cnn_{suffix}"] = cnn_out
        expected[f"text_{suffix}"] = text_out
    np.savez(OUT / "expected.npz", **expected)
    for f in sorted(OUT.iterdir()):
        print(f"{f.name}: {f.stat().st_size} bytes")
    print(f"keras {keras.__version__}, tf-keras {tf_keras.__version__}, tensorflow {tf.__version__}")


if __name__ == "__main__":
    main()
