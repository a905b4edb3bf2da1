"""keras.applications models through the TensorFlow frontend, against TensorFlow.

Each model is built with weights=None and logits out (classifier_activation=None), calibrated so
that its outputs are informative (BatchNorm statistics from a batch of photo crops; the layers of
networks without BatchNorm rescaled to unit output variance), saved as a SavedModel with
`tf.saved_model.save` or Keras `model.export`, compiled with `neo compile --framework tensorflow`,
run on a photo crop it was not calibrated on, and compared with TensorFlow: the maximum absolute
error must be at most 1e-4 * max|reference| and the top-1 class must agree.

    python scripts/tf_zoo.py                     # every model, compiled for x86_64: docs/TF_ZOO.md
    python scripts/tf_zoo.py ResNet50 VGG16      # some models, prints the table
    python scripts/tf_zoo.py --target rasp4b     # compiled for arm64, run under qemu

Also imported by tests/test_tensorflow.py.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4  # relative to max|reference|


@dataclass(frozen=True)
class App:
    name: str  # keras.applications attribute
    size: int  # input height and width (small, to keep the sweep fast; the network's minimum)
    saved_by: str  # "save" (tf.saved_model.save) or "export" (Keras model.export)
    module: str  # keras.applications submodule with its preprocess_input
    kwargs: tuple = ()


APPS = {a.name: a for a in (
    App("MobileNetV2", 64, "export", "mobilenet_v2"),
    App("MobileNetV3Small", 64, "save", "mobilenet_v3"),
    App("VGG16", 32, "export", "vgg16", (("include_top", False), ("pooling", "avg"))),
    App("ResNet50", 64, "save", "resnet50"),
    App("EfficientNetB0", 64, "export", "efficientnet"),
    App("Xception", 71, "save", "xception"),
    App("DenseNet121", 64, "save", "densenet"),
    App("InceptionV3", 139, "export", "inception_v3"),
    App("NASNetMobile", 64, "save", "nasnet"),
    App("ConvNeXtTiny", 64, "export", "convnext"),
)}


def tf_modules():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    return tf, keras


def photo_crops(n: int, size: int, seed: int) -> np.ndarray:
    """n random square crops of scikit-learn's two sample photos, resized to size x size,
    float32 in 0..255 (NHWC)."""
    from sklearn.datasets import load_sample_images

    tf, _ = tf_modules()
    photos = load_sample_images().images
    r = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos[(seed + i) % len(photos)]
        s = int(r.integers(96, min(img.shape[:2])))
        y, x = int(r.integers(0, img.shape[0] - s)), int(r.integers(0, img.shape[1] - s))
        crop = img[y:y + s, x:x + s].astype(np.float32)
        out.append(tf.image.resize(crop, (size, size)).numpy())
    return np.stack(out).astype(np.float32)


def preprocess(app: App, images: np.ndarray) -> np.ndarray:
    _, keras = tf_modules()
    fn = getattr(keras.applications, app.module).preprocess_input
    return np.asarray(fn(images.copy())).astype(np.float32)


def _rescale_to_unit_variance(model, x: np.ndarray) -> int:
    """For a network without normalization: scale each layer's kernel (and bias) so that its
    output has unit standard deviation on `x`, layer by layer (as LSUV initialization does).
    Without this a deep random network's activations shrink layer after layer and its outputs
    come out near zero for every input."""
    _, keras = tf_modules()
    n = 0
    for layer in model.layers:
        if not hasattr(layer, "kernel") or not layer.weights:
            continue
        probe = keras.Model(model.input, layer.output)
        std = float(np.asarray(probe(x)).std())
        if std > 0:
            layer.set_weights([w / std for w in layer.get_weights()])
            n += 1
    return n


def calibrated_model(app: App, seed: int = 0):
    """keras.applications `app` with weights=None, logits out, and informative outputs."""
    _, keras = tf_modules()
    keras.utils.set_random_seed(seed)
    kwargs = dict(app.kwargs)
    if kwargs.get("include_top", True):
        kwargs["classifier_activation"] = None
    model = getattr(keras.applications, app.name)(weights=None,
                                                   input_shape=(app.size, app.size, 3), **kwargs)
    calib = preprocess(app, photo_crops(16, app.size, seed + 100))
    layers = list(model._flatten_layers())
    bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    if bns:
        # momentum 0: the moving statistics become those of this one batch
        for bn in bns:
            bn.momentum = 0.0
        model(calib, training=True)
    elif not any(isinstance(layer, keras.layers.LayerNormalization) for layer in layers):
        _rescale_to_unit_variance(model, calib)
    return model


def save_model(model, how: str, path: Path, input_name: str = "images") -> str:
    """Write `model` as a SavedModel; the name of its input in the serving signature."""
    from neo.frontends.tensorflow import tensorflow_model_inputs

    tf, _ = tf_modules()
    if how == "export":  # the input is named after the Keras tensor (keras_tensor_N)
        model.export(str(path), verbose=False)
        return tensorflow_model_inputs(path)[0][0]
    # tf.saved_model.save of a module holding the variables and one serving function, the TF2
    # way of saving any model (saving the Keras object itself also traces every layer)
    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=input_name)
    module = tf.Module()
    module.weights = list(model.variables)
    module.serve = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return input_name


def compare(got, want) -> tuple[float, bool]:
    """(max abs error / max |reference|, same top-1)."""
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    scale = float(np.abs(want).max()) or 1.0
    err = float(np.abs(got - want).max()) / scale
    top1 = bool((got.reshape(got.shape[0], -1).argmax(1)
                 == want.reshape(want.shape[0], -1).argmax(1)).all())
    return err, top1


def compile_and_run(model_dir: Path, shape: dict, feeds: dict, workdir: Path,
                    target: str = "x86_64") -> tuple[list, dict]:
    """`neo compile --framework tensorflow` and run the artifact (under qemu for another arch)."""
    from neo.compiler import CompileOptions, compile_model
    from neo.run import run_artifact

    out = workdir / f"artifact-{target}"
    info = compile_model(CompileOptions(framework="tensorflow", shape=json.dumps(shape),
                                        target=target, model=str(model_dir), output=out,
                                        workdir=workdir))
    _, outs, _ = run_artifact(out, feeds)
    return outs, info


def interpret(model_dir: Path, shape: dict, feeds: dict) -> list:
    """The frontend's IR graph run by the IR's numpy interpreter (no code generation)."""
    from neo.frontends.tensorflow import import_tensorflow
    from neo.ir.interpreter import interpret as run

    g = import_tensorflow(model_dir, {k: tuple(v) for k, v in shape.items()})
    return run(g, feeds)


@dataclass
class Result:
    model: str
    saved_by: str
    size: int
    error: float
    top1: bool
    spread: float  # std of the reference logits (informative when well above 0)
    kernels: int
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error <= TOLERANCE and self.top1 and self.spread > 1e-2


def check(app: App, workdir: Path, target: str = "x86_64") -> Result:
    """Build, calibrate, save, compile (target "ir": interpret the IR instead) and compare."""
    t0 = time.perf_counter()
    model = calibrated_model(app)
    x = preprocess(app, photo_crops(1, app.size, 7))
    ref = np.asarray(model(x, training=False))
    path = workdir / f"{app.name}-{app.saved_by}"
    name = save_model(model, app.saved_by, path)
    shape = {name: [1, app.size, app.size, 3]}
    kernels = 0
    if target == "ir":
        outs = interpret(path, shape, {name: x})
    else:
        outs, info = compile_and_run(path, shape, {name: x}, workdir, target)
        kernels = info["kernels"]
    err, top1 = compare(outs[0], ref)
    return Result(app.name, app.saved_by, app.size, err, top1, float(ref.std()), kernels,
                  time.perf_counter() - t0)


def format_table(results: list[Result], target: str) -> str:
    lines = [("| model | saved by | input | max error / max\\|ref\\| | top-1 | logit std | "
              "kernels | seconds |"), "|---|---|---|---|---|---|---|---|"]
    for r in results:
        saver = "tf.saved_model.save" if r.saved_by == "save" else "model.export"
        lines.append(f"| {r.model} | {saver} | {r.size}x{r.size} | {r.error:.2e} | "
                     f"{'same' if r.top1 else 'DIFFERENT'} | {r.spread:.3g} | {r.kernels} | "
                     f"{r.seconds:.0f} |")
    passed = sum(r.ok for r in results)
    lines.append(f"\n{passed} of {len(results)} within {TOLERANCE:g} of max|reference| with the "
                 f"same top-1 ({target}).")
    return "\n".join(lines)


def _cpu() -> str:
    """The CPU's model name and widest vector ISA, from lscpu."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"
    isa = "AVX-512" if "avx512f" in out else "AVX2" if "avx2" in out else ""
    return f"{name} with {isa}" if isa else name


def main(argv: list[str] | None = None) -> int:
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", help="keras.applications names (default: all)")
    p.add_argument("--target", default="x86_64")
    args = p.parse_args(argv)
    names = args.models or list(APPS)
    tf, keras = tf_modules()
    results = []
    with tempfile.TemporaryDirectory(prefix="neo-tf-zoo-") as tmp:
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            r = check(APPS[name], work, args.target)
            print(f"{r.model}: error {r.error:.2e}, top-1 {r.top1}, {r.seconds:.0f}s",
                  file=sys.stderr)
            results.append(r)
    table = format_table(results, args.target)
    print(table)
    if not args.models:
        doc = ROOT / "docs" / "TF_ZOO.md"
        intro = textwrap.fill(
            f"`python scripts/tf_zoo.py --target {args.target}` (TensorFlow {tf.__version__}, "
            f"Keras {keras.__version__}; {_cpu()}). Each model has weights=None and calibrated "
            "statistics (scripts/tf_zoo.py says how), is saved as a SavedModel, compiled by "
            "`neo compile --framework tensorflow` and compared with TensorFlow on a photo crop.",
            100)
        doc.write_text("# keras.applications through the TensorFlow frontend\n\n" + intro
                       + "\n\n" + table + "\n")
        print(f"wrote {doc}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
