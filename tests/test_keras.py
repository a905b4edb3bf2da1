"""The Keras frontend (frontends/keras): Keras 2 and 3 `.h5` and Keras 3 `.keras` models, read with
h5py only, compiled and run against Keras itself (within 1e-4 of max|reference|, same top-1).

- Committed fixtures (tests/data/keras, written by scripts/keras_fixtures.py) need no TensorFlow:
  one test reads them in a subprocess where importing tensorflow, keras or tf_keras fails.
- Models built at test time need tensorflow-cpu and tf-keras (test dependencies only): ten
  keras.applications architectures through `.keras` and Keras 3 `.h5` (three also compiled for
  rasp4b and run under qemu), four through tf-keras `.h5`, recurrent and attention models, a
  two-input/two-output model with shared layers and a nested model, and the other layers.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, TESTS_DIR, require_module, require_qemu_for
from keras_models import (
    APPLICATIONS,
    activations_model,
    application,
    application_input,
    attention_model,
    image_batch,
    image_layers,
    nhwc,
    ops_model,
    recurrent_zoo,
    sequence_layers,
    text_classifier,
    token_batch,
    two_in_two_out,
)

from neo.errors import ModelLoadError, UnsupportedModelError
from neo.frontends import FRONTENDS

DATA = TESTS_DIR / "data" / "keras"
TOL = 1e-4
# Measured on EfficientNetB0 (the seeded 96x96 model, inputs 0 and 1) against the same Keras model
# in float64 (keras.config.set_dtype_policy("float64")): Keras's float32 outputs are off by 2.0e-5
# and 6.0e-6 of max|ref|, neo's by 1.5e-5 and 7.2e-6, so neo - Keras (3.3e-5, 1.0e-5) is mostly
# float32 rounding, Keras's included. With ImageNet-normalized inputs (the 1.1e-4 failure before
# PIXEL_INPUTS) neo was still within 1.0e-5 of float64 and Keras float32 within 2.4e-5.
ARM64 = ("MobileNetV2", "MobileNetV3Small", "VGG16")
KERAS2_APPLICATIONS = ("MobileNetV2", "MobileNetV3Small", "ResNet50", "VGG16")


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


def check(got, ref, what: str, top1: bool = True) -> float:
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, Keras {ref.shape}"
    err = rel_err(got, ref)
    assert err <= TOL, f"{what}: max error {err:.2e} x max|ref|"
    if top1:
        assert np.array_equal(got.argmax(-1), ref.argmax(-1)), f"{what}: top-1 differs"
    return err


def informative(refs: list[np.ndarray], what: str) -> None:
    """The reference outputs vary with the input and across classes (STYLE.md point 13)."""
    scale = max(np.abs(r).max() for r in refs)
    assert all(r.std() > 1e-3 * scale for r in refs), f"{what}: near-constant reference outputs"
    if len(refs) > 1:
        assert np.abs(refs[0] - refs[1]).max() > 1e-2 * scale, f"{what}: input-independent"


@pytest.fixture(scope="session")
def keras3():
    require_module("tensorflow")
    return require_module("keras")


@pytest.fixture(scope="session")
def keras2():
    require_module("tensorflow")
    return require_module("tf_keras")


def run(compile_cached, path: Path, shapes: dict, feeds: dict, target: str = "host"):
    """Compile (once per session) and run; the outputs in order."""
    art = compile_cached(path, target, shape=shapes, framework="keras")
    if target == "host":
        from neo.runtime import Model

        with Model(str(art)) as m:
            return m.run(feeds)
    from neo.run import run_artifact

    _, outs, _ = run_artifact(art, feeds)
    return outs


def predict(model, feeds) -> list[np.ndarray]:
    out = model(feeds, training=False)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


# -- without TensorFlow --------------------------------------------------------------------------
FIXTURES = [("small_cnn.keras", "small_cnn_k3", "image"), ("small_cnn_k3.h5", "small_cnn_k3", "image"),
            ("small_cnn_k2.h5", "small_cnn_k2", "image"), ("text.keras", "text_k3", "tokens"),
            ("text_k3.h5", "text_k3", "tokens"), ("text_k2.h5", "text_k2", "tokens")]

_NO_TENSORFLOW = textwrap.dedent("""
    import sys

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "torch"):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    import json
    import numpy as np
    from neo.frontends import FRONTENDS
    from neo.ir.interpreter import interpret

    data, fixtures = sys.argv[1], json.loads(sys.argv[2])
    expected = np.load(f"{data}/expected.npz")
    fe = FRONTENDS["keras"]
    for name, key, feed in fixtures:
        x = expected[feed]
        (input_name, _, _), = fe.inputs(f"{data}/{name}")
        shape = x.shape if x.ndim < 4 else (x.shape[0], *x.shape[2:], x.shape[1])
        got = interpret(fe.load(f"{data}/{name}", {input_name: shape}), {input_name: x})[0]
        ref = expected[key]
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
        assert err <= 1e-4 and (got.argmax(-1) == ref.argmax(-1)).all(), (name, err)
        print(name, f"{err:.1e}")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
    assert not loaded, loaded
    print("ok")
""")


def test_reader_needs_no_tensorflow():
    """Every committed fixture (Keras 2 and 3 .h5, .keras) converts and matches Keras's outputs in
    a process where tensorflow, keras and tf_keras cannot be imported."""
    proc = subprocess.run([sys.executable, "-c", _NO_TENSORFLOW, str(DATA), json.dumps(FIXTURES)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
    assert len(proc.stdout.splitlines()) == len(FIXTURES) + 1


@pytest.mark.parametrize("name,key,feed", [f for f in FIXTURES if f[0].startswith("small_cnn")])
def test_committed_fixture_compiled(compile_cached, name, key, feed):
    expected = np.load(DATA / "expected.npz")
    x = expected[feed]
    (out,) = run(compile_cached, DATA / name, {"image": list(x.shape)}, {"image": x})
    check(out, expected[key], name)


def test_inputs_and_inspect_show_neo_layout():
    fe = FRONTENDS["keras"]
    assert fe.inputs(DATA / "small_cnn.keras") == [("image", (None, 16, 16, 3), "float32")]
    info = fe.inspect(DATA / "small_cnn_k2.h5")
    assert info["inputs"][0]["shape"] == (None, 3, 16, 16)  # as --shape takes it
    assert "NCHW" in info["details"]["layout"] and "NHWC" in info["details"]["layout"]
    assert info["details"]["format"] == "Keras 2 .h5"
    assert info["ops"]["Dense"] == 5 and info["ops"]["tf.__operators__.add"] == 1
    assert info["unsupported"] == []


def test_neo_inspect_cli():
    proc = subprocess.run([sys.executable, "-m", "neo", "inspect", str(DATA / "text.keras")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "tokens: int32 (None, 12)" in proc.stdout and "Bidirectional" in proc.stdout
    assert "every op is supported" in proc.stdout


def _write_keras(path: Path, layers: list[dict], inputs, outputs) -> Path:
    """A .keras archive written by hand (config + an empty weights file): no Keras needed."""
    import h5py

    config = {"module": "keras.src.models.functional", "class_name": "Functional",
              "config": {"name": "m", "trainable": True, "layers": layers,
                         "input_layers": inputs, "output_layers": outputs},
              "registered_name": "Functional"}
    weights = path.with_suffix(".weights.h5")
    with h5py.File(weights, "w") as f:
        f.create_group("layers")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.5.0"}))
        z.writestr("config.json", json.dumps(config))
        z.write(weights, "model.weights.h5")
    return path


def _layer(cls: str, name: str, inbound: str | None, module: str = "keras.layers",
           registered: str | None = None, **config) -> dict:
    args = [] if inbound is None else [{"args": [{"class_name": "__keras_tensor__", "config": {
        "shape": [None, 8], "dtype": "float32", "keras_history": [inbound, 0, 0]}}],
        "kwargs": {}}]
    return {"module": module, "class_name": cls, "registered_name": registered, "name": name,
            "config": {"name": name, "trainable": True, **config}, "inbound_nodes": args}


def test_unsupported_layers_and_custom_objects_reported_at_once(tmp_path):
    layers = [
        {"module": "keras.layers", "class_name": "InputLayer", "name": "x", "inbound_nodes": [],
         "config": {"batch_shape": [None, 8], "dtype": "float32", "name": "x"}},
        _layer("Lambda", "lam", "x", function={"class_name": "__lambda__"}),
        _layer("MyBlock", "block1", "lam", module="my_package.layers",
               registered="my_package>MyBlock"),
        _layer("MyBlock", "block2", "block1", module="my_package.layers",
               registered="my_package>MyBlock"),
        _layer("Dense", "dense", "block2", units=4, activation={
            "module": "my_package.acts", "class_name": "function", "config": "spiky",
            "registered_name": "my_package>spiky"}, use_bias=False),
    ]
    path = _write_keras(tmp_path / "custom.keras", layers, [["x", 0, 0]], [["dense", 0, 0]])
    with pytest.raises(UnsupportedModelError) as e:
        FRONTENDS["keras"].load(path, {"x": (1, 8)})
    msg = e.value.message
    assert "my_package>MyBlock (2 nodes: block1, block2)" in msg
    assert "Lambda (1 node: lam" in msg and "my_package>spiky (1 node: dense" in msg
    # the CLI: exit 4, one line, every problem named
    proc = subprocess.run([sys.executable, "-m", "neo", "compile", str(path), "--framework",
                           "keras", "--shape", '{"x":[1,8]}', "--target", "x86_64", "--output",
                           str(tmp_path / "out")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 4, proc.stderr
    assert "MyBlock" in proc.stderr and "Lambda" in proc.stderr and "spiky" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_bad_files_are_load_errors(tmp_path):
    import h5py

    weights_only = tmp_path / "weights.h5"
    with h5py.File(weights_only, "w") as f:
        f.attrs["layer_names"] = [b"dense"]
    not_keras = tmp_path / "model.keras"
    not_keras.write_bytes(b"not a zip or hdf5 file")
    fe = FRONTENDS["keras"]
    with pytest.raises(ModelLoadError, match="weights only"):
        fe.inputs(weights_only)
    with pytest.raises(ModelLoadError, match="neither a Keras 3 .keras archive nor an HDF5"):
        fe.inputs(not_keras)


# -- keras.applications ----------------------------------------------------------------------------
def graph_digest(g) -> str:
    """A digest of an IR graph's structure and constants: equal digests compile to the same
    artifact (compilation is deterministic)."""
    import hashlib

    names: dict[int, str] = {id(v): f"input {v.name} {v.shape} {v.dtype}" for v in g.inputs}

    def ref(v) -> str:
        if v.is_const:
            return f"const {v.shape} {v.dtype} {hashlib.sha256(v.data.tobytes()).hexdigest()}"
        return names[id(v)]

    h = hashlib.sha256()
    for i, n in enumerate(g.nodes):
        attrs = sorted((k, repr(v)) for k, v in n.attrs.items())
        h.update(f"{n.op} {attrs} {[ref(v) for v in n.inputs]}\n".encode())
        for j, o in enumerate(n.outputs):
            names[id(o)] = f"node {i}.{j} {o.shape} {o.dtype}"
    h.update(f"{[ref(o) for o in g.outputs]} {g.out_names()}".encode())
    return h.hexdigest()


@pytest.mark.parametrize("arch", list(APPLICATIONS))
def test_keras_application(arch, keras3, compile_cached, tmp_path):
    """Compiled from .keras against the Keras model; the Keras 3 .h5 of the same model converts
    to the same graph, constants included (so to the same artifact), and, for three of them,
    compiled from .h5 for rasp4b and run under qemu."""
    size = APPLICATIONS[arch]
    model = application(keras3, arch, size)
    name = model.layers[0].name
    xs = [application_input(arch, seed, 1, size) for seed in (0, 1)]
    refs = [predict(model, nhwc(x))[0] for x in xs]
    informative(refs, arch)
    shape = {name: [1, 3, size, size]}
    paths = {fmt: tmp_path / f"{arch}.{fmt}" for fmt in ("keras", "h5")}
    for path in paths.values():
        model.save(path)
    errs = []
    for x, ref in zip(xs, refs):
        (got,) = run(compile_cached, paths["keras"], shape, {name: x})
        errs.append(check(got, ref, f"{arch} .keras"))
    fe = FRONTENDS["keras"]
    nhwc_shape = {name: (1, size, size, 3)}
    assert graph_digest(fe.load(paths["h5"], nhwc_shape)) == graph_digest(
        fe.load(paths["keras"], nhwc_shape)), f"{arch}: the .h5 converts to another graph"
    print(f"{arch} .keras/.h5: max error {max(errs):.1e} x max|ref|")
    if arch in ARM64:
        require_qemu_for("arm64")
        (got,) = run(compile_cached, paths["h5"], shape, {name: xs[0]}, "rasp4b")
        err = check(got, refs[0], f"{arch} .h5 on rasp4b")
        print(f"{arch} .h5 on rasp4b: max error {err:.1e} x max|ref|")


@pytest.mark.parametrize("arch", KERAS2_APPLICATIONS)
def test_keras2_application(arch, keras2, compile_cached, tmp_path):
    """tf-keras (the Keras 2 config dialect, TFOpLambda layers) through .h5."""
    size = APPLICATIONS[arch]
    model = application(keras2, arch, size)
    name = model.layers[0].name
    xs = [application_input(arch, seed, 1, size) for seed in (2, 3)]
    refs = [predict(model, nhwc(x))[0] for x in xs]
    informative(refs, arch)
    path = tmp_path / f"{arch}.h5"
    model.save(path)
    for x, ref in zip(xs, refs):
        (got,) = run(compile_cached, path, {name: [1, 3, size, size]}, {name: x})
        err = check(got, ref, f"{arch} (tf-keras .h5)")
    print(f"{arch} tf-keras .h5: max error {err:.1e} x max|ref|")


def _save_all(model, lib, tmp_path: Path, stem: str) -> list[Path]:
    paths = []
    for suffix in ((".keras", ".h5") if lib.__name__ == "keras" else (".h5",)):
        p = tmp_path / f"{stem}_{lib.__name__}{suffix}"
        model.save(p)
        paths.append(p)
    return paths


@pytest.fixture(params=["keras3", "keras2"])
def lib(request):
    return request.getfixturevalue(request.param)


def compare_model(model, lib, tmp_path: Path, compile_cached, feeds: list[np.ndarray],
                  stem: str, classifier: bool = False) -> list[float]:
    """Save `model` in every format `lib` writes, compile each and compare every output with
    Keras's on `feeds` (the inputs in Keras's layout, in model order). Image inputs go to the
    compiled model NCHW (Neo's Keras convention); outputs come back as Keras computes them."""
    refs = predict(model, feeds if len(feeds) > 1 else feeds[0])
    histories = [t._keras_history for t in model.inputs]
    in_names = [(getattr(h, "operation", None) or h.layer).name for h in histories]
    ours = {n: (np.ascontiguousarray(np.moveaxis(x, -1, 1)) if x.ndim >= 4 else x)
            for n, x in zip(in_names, feeds)}
    shapes = {n: list(x.shape) for n, x in ours.items()}
    errs = []
    first, *others = _save_all(model, lib, tmp_path, stem)
    outs = run(compile_cached, first, shapes, ours)
    assert len(outs) == len(refs), f"{first.name}: {len(outs)} outputs, Keras {len(refs)}"
    for i, (got, ref) in enumerate(zip(outs, refs)):
        errs.append(check(got, ref, f"{first.name} output {i}", top1=classifier and i == 0))
    # the model's other files convert to the same graph, constants included: the same artifact
    fe = FRONTENDS["keras"]
    model_shapes = {n: tuple(x.shape) for n, x in zip(in_names, feeds)}
    digest = graph_digest(fe.load(first, model_shapes)) if others else None
    for path in others:
        assert graph_digest(fe.load(path, model_shapes)) == digest, f"{path.name}: another graph"
    return errs


def test_recurrent_layers(lib, compile_cached, tmp_path):
    model = recurrent_zoo(lib, steps=5)
    tokens = token_batch(11, 2, vocab=40, steps=5)
    refs = predict(model, tokens)
    informative(list(refs[0]), "recurrent zoo")
    errs = compare_model(model, lib, tmp_path, compile_cached, [tokens], "recurrent", True)
    print(f"recurrent layers ({lib.__name__}): max error {max(errs):.1e}")


def test_text_classifier(lib, compile_cached, tmp_path):
    model = text_classifier(lib, steps=8)
    tokens = token_batch(12, 4, steps=8)
    informative(list(predict(model, tokens)[0]), "text classifier")
    errs = compare_model(model, lib, tmp_path, compile_cached, [tokens], "text", True)
    print(f"text classifier ({lib.__name__}): max error {max(errs):.1e}")


def test_multi_head_attention(lib, compile_cached, tmp_path):
    model = attention_model(lib)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 10, 16)).astype(np.float32)
    mask = (rng.random((2, 10, 10)) < 0.7).astype(np.float32)
    mask[:, :, 0] = 1  # every query sees at least one key
    errs = compare_model(model, lib, tmp_path, compile_cached, [x, mask], "attention", True)
    print(f"attention ({lib.__name__}): max error {max(errs):.1e}")


def test_two_inputs_two_outputs_shared_and_nested(lib, compile_cached, tmp_path):
    model = two_in_two_out(lib)
    rng = np.random.default_rng(14)
    img = nhwc(image_batch(14, 1, 24, "smooth"))
    meta = rng.standard_normal((1, 5)).astype(np.float32)
    errs = compare_model(model, lib, tmp_path, compile_cached, [img, meta], "two_in_two_out",
                         True)
    art = compile_cached(tmp_path / f"two_in_two_out_{lib.__name__}.h5", "host",
                         shape={"image": [1, 3, 24, 24], "meta": [1, 5]}, framework="keras")
    meta_json = json.loads((art / "compiled.meta").read_text())
    assert [i["shape"] for i in meta_json["inputs"]] == [[1, 3, 24, 24], [1, 5]]  # NCHW
    assert [o["name"] for o in meta_json["outputs"]] == ["class", "score"]
    print(f"two inputs, two outputs ({lib.__name__}): max error {max(errs):.1e}")


def test_image_layers(lib, compile_cached, tmp_path):
    model = image_layers(lib)
    x = nhwc(np.random.default_rng(15).standard_normal((1, 4, 20, 20)).astype(np.float32))
    errs = compare_model(model, lib, tmp_path, compile_cached, [x], "image_layers")
    print(f"image layers ({lib.__name__}): max error {max(errs):.1e}")


def test_sequence_layers(lib, compile_cached, tmp_path):
    model = sequence_layers(lib)
    x = np.random.default_rng(16).standard_normal((1, 32, 5)).astype(np.float32)
    errs = compare_model(model, lib, tmp_path, compile_cached, [x], "sequence_layers")
    print(f"1-D layers ({lib.__name__}): max error {max(errs):.1e}")


def test_activations(lib, compile_cached, tmp_path):
    model = activations_model(lib)
    x = (3 * np.random.default_rng(17).standard_normal((2, 6, 8))).astype(np.float32)
    errs = compare_model(model, lib, tmp_path, compile_cached, [x], "activations")
    print(f"{len(errs)} activations ({lib.__name__}): max error {max(errs):.1e}")


def test_tensor_operations(lib, compile_cached, tmp_path):
    """keras.ops in Keras 3 models, tf.* TFOpLambda layers in Keras 2 ones."""
    tf = None if lib.__name__ == "keras" else require_module("tensorflow")
    model = ops_model(lib, tf)
    x = np.random.default_rng(18).standard_normal((2, 6, 8)).astype(np.float32)
    errs = compare_model(model, lib, tmp_path, compile_cached, [x], "ops")
    print(f"{len(errs)} operation outputs ({lib.__name__}): max error {max(errs):.1e}")


def _write_keras2_h5(path: Path, config: dict, weights: dict[str, list[tuple[str, np.ndarray]]],
                     version: str = "2.2.4") -> Path:
    """An .h5 in the layout Keras 2 writes, by hand (old dialects no installable Keras writes)."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = version.encode()
        f.attrs["backend"] = b"tensorflow"
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [name.encode() for name in weights]
        for layer, ws in weights.items():
            lg = g.create_group(layer)
            lg.attrs["weight_names"] = [f"{layer}/{w}:0".encode() for w, _ in ws]
            for w, arr in ws:
                lg.create_dataset(f"{layer}/{w}:0", data=arr)
    return path


def _dense(name: str, units: int, activation: str, **extra) -> dict:
    return {"class_name": "Dense", "config": {
        "name": name, "trainable": True, "units": units, "activation": activation,
        "use_bias": True, "kernel_initializer": {"class_name": "VarianceScaling", "config": {}},
        **extra}}


def test_keras_2_0_dialects(tmp_path):
    """Keras 2.0-2.2 configs: a Sequential whose config is the list of layers (the input shape on
    the first layer), and a functional "Model" with three-element inbound references."""
    rng = np.random.default_rng(19)
    w1, b1 = rng.standard_normal((3, 5)).astype(np.float32), rng.standard_normal(5).astype(
        np.float32)
    w2, b2 = rng.standard_normal((5, 2)).astype(np.float32), rng.standard_normal(2).astype(
        np.float32)
    weights = {"dense_1": [("kernel", w1), ("bias", b1)], "dense_2": [("kernel", w2), ("bias", b2)]}
    x = rng.standard_normal((4, 3)).astype(np.float32)
    want = np.maximum(x @ w1 + b1, 0) @ w2 + b2
    sequential = {"class_name": "Sequential", "config": [
        _dense("dense_1", 5, "relu", batch_input_shape=[None, 3], dtype="float32"),
        _dense("dense_2", 2, "linear")]}
    functional = {"class_name": "Model", "config": {
        "name": "model_1",
        "layers": [
            {"name": "input_1", "class_name": "InputLayer", "inbound_nodes": [],
             "config": {"batch_input_shape": [None, 3], "dtype": "float32", "name": "input_1"}},
            {**_dense("dense_1", 5, "relu"), "name": "dense_1",
             "inbound_nodes": [[["input_1", 0, 0]]]},
            {**_dense("dense_2", 2, "linear"), "name": "dense_2",
             "inbound_nodes": [[["dense_1", 0, 0]]]}],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["dense_2", 0, 0]]}}
    fe = FRONTENDS["keras"]
    from neo.ir.interpreter import interpret

    for name, config, input_name in (("seq.h5", sequential, "dense_1_input"),
                                     ("func.h5", functional, "input_1")):
        path = _write_keras2_h5(tmp_path / name, config, weights)
        assert fe.inputs(path) == [(input_name, (None, 3), "float32")]
        (got,) = interpret(fe.load(path, {input_name: (4, 3)}), {input_name: x})
        check(got, want, name, top1=False)
