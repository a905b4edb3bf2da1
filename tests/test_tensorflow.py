"""The TensorFlow frontend against TensorFlow itself: keras.applications models saved as
SavedModels (tf.saved_model.save and Keras model.export), a frozen GraphDef of raw TensorFlow ops,
an LSTM/GRU classifier (TF2 While loops), a two-input/two-output model, on x86_64 and (three
CNNs) arm64 under qemu; unsupported ops, signatures and the CLI.

Fixtures are generated here, at test time: TensorFlow is a test dependency only. Outputs must be
within 1e-4 of max|reference| with the same top-1 (scripts/tf_zoo.py: calibration, comparison).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import in_ci, require_qemu_for

from scripts.tf_zoo import APPS, TOLERANCE, compare, compile_and_run, interpret


@pytest.fixture(scope="module")
def tf():
    """tensorflow (TF_CPP_MIN_LOG_LEVEL=3); CI installs it, so a missing one fails there."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if in_ci():
        import tensorflow
    else:
        tensorflow = pytest.importorskip("tensorflow")
    return tensorflow


@pytest.fixture(scope="module")
def keras(tf):
    import keras

    return keras


def _freeze(tf, fn):
    from neo.frontends.tensorflow.loader import freeze

    return freeze(tf, fn)


def _write_graph(tf, graph_def, path: Path) -> Path:
    tf.io.write_graph(graph_def, str(path.parent), path.name, as_text=path.suffix == ".pbtxt")
    return path


def assert_close(got, want, what: str) -> tuple[float, bool]:
    want = np.asarray(want)
    assert np.asarray(got).shape == want.shape, f"{what}: shape {np.shape(got)} != {want.shape}"
    err, top1 = compare(got, want)
    assert err <= TOLERANCE and top1, f"{what}: max error {err:.2e} x max|ref|, top-1 {top1}"
    return err, top1


# -- keras.applications -------------------------------------------------------------------------
# Where each model runs: compiled for x86_64, also for arm64 (rasp4b) under qemu, or (the
# largest: hundreds of kernels, minutes of code generation on two cores) through the frontend and
# the IR's interpreter; `python scripts/tf_zoo.py` compiles them all (docs/TF_ZOO.md).
APP_TARGETS = {
    "MobileNetV2": ("x86_64", "rasp4b"),
    "MobileNetV3Small": ("x86_64", "rasp4b"),
    "VGG16": ("x86_64", "rasp4b"),
    "ResNet50": ("x86_64",),
    "EfficientNetB0": ("x86_64",),
    "Xception": ("x86_64",),
    "DenseNet121": ("ir",),
    "InceptionV3": ("ir",),
    "NASNetMobile": ("ir",),
    "ConvNeXtTiny": ("ir",),
}


@pytest.mark.parametrize("name", list(APP_TARGETS))
def test_keras_application(name, tf, tmp_path):
    from scripts.tf_zoo import calibrated_model, photo_crops, preprocess, save_model

    app = APPS[name]
    targets = APP_TARGETS[name]
    for t in targets:
        if t not in ("x86_64", "ir"):
            require_qemu_for(t)
    model = calibrated_model(app)
    x = preprocess(app, photo_crops(1, app.size, 7))
    ref = np.asarray(model(x, training=False))
    assert ref.std() > 1e-2, f"{name}: degenerate reference logits (std {ref.std():.2g})"
    other = np.asarray(model(preprocess(app, photo_crops(1, app.size, 8)), training=False))
    assert np.abs(other - ref).max() > 1e-2 * np.abs(ref).max(), f"{name}: input-independent"
    path = tmp_path / f"{name}-{app.saved_by}"
    input_name = save_model(model, app.saved_by, path)
    shape = {input_name: [1, app.size, app.size, 3]}
    for target in targets:
        if target == "ir":
            outs = interpret(path, shape, {input_name: x})
        else:
            outs, info = compile_and_run(path, shape, {input_name: x}, tmp_path, target)
            assert info["inputs"][0]["shape"] == [1, app.size, app.size, 3]  # NHWC in and out
        assert_close(outs[0], ref, f"{name} ({app.saved_by}) on {target}")


# -- a frozen GraphDef of raw TensorFlow ops ----------------------------------------------------
def _op_zoo(tf):
    """A tf.function over the ops of the issue's list that keras.applications do not all use,
    with constant weights; returns (concrete function, input)."""
    r = np.random.default_rng(3)

    def w(*shape, scale=0.3):
        return tf.constant((r.standard_normal(shape) * scale).astype(np.float32))

    k1, b1 = w(3, 3, 3, 8), w(8)
    kd = w(3, 3, 8, 2)
    kt = w(3, 3, 4, 16)  # conv2d_transpose: [h, w, out, in]
    kd2 = w(2, 2, 16, 8)
    bn = [tf.constant(np.abs(r.standard_normal(8)).astype(np.float32) + 0.5), w(8), w(8),
          tf.constant(np.abs(r.standard_normal(8)).astype(np.float32) + 0.2)]
    dense = w(24, 5)
    idx = tf.constant([3, 0, 2], tf.int32)

    @tf.function(input_signature=[tf.TensorSpec((1, 12, 12, 3), tf.float32, name="image")])
    def zoo(x):
        y = tf.nn.bias_add(tf.nn.conv2d(x, k1, 1, "SAME"), b1)
        y = tf.compat.v1.nn.fused_batch_norm(y, *bn, epsilon=1e-3, is_training=False)[0]
        a = tf.nn.relu6(y)
        a = tf.nn.depthwise_conv2d(a, kd, [1, 2, 2, 1], "SAME")  # 16 channels, 6x6
        p = tf.nn.max_pool2d(a, 3, 2, "SAME") + tf.nn.avg_pool2d(a, 3, 2, "SAME")  # 3x3
        up = tf.nn.conv2d_transpose(p, kt, [1, 6, 6, 4], 2, "SAME")
        dil = tf.nn.conv2d(tf.pad(a, [[0, 0], [1, 1], [2, 0], [0, 0]], "SYMMETRIC"), kd2, 1,
                           [[0, 0], [1, 0], [0, 1], [0, 0]], dilations=2)
        acts = tf.concat([tf.nn.elu(up), tf.nn.selu(up), tf.nn.leaky_relu(up, 0.1),
                          tf.nn.softplus(up), tf.math.erf(up), tf.sigmoid(up) * tf.tanh(up)],
                         axis=-1)
        rs = [tf.image.resize(p, (7, 5), "bilinear"),
              tf.compat.v1.image.resize_bilinear(p, (7, 5), align_corners=True),
              tf.image.resize(p, (7, 5), "nearest"),
              tf.compat.v1.image.resize_nearest_neighbor(p, (7, 5), align_corners=True),
              tf.compat.v1.image.resize_nearest_neighbor(p, (7, 5))]
        out1 = tf.concat(rs, axis=1)
        s = a[:, ::-2, 1:5, tf.newaxis, ::3]
        t = a[0, ..., 2]
        u = tf.reverse(tf.slice(a, [0, 1, 2, 3], [-1, 3, 2, 4]), axis=[2])
        v = tf.stack(tf.unstack(t, axis=0)[::2], axis=1)
        parts = tf.split(acts, 3, axis=-1)
        parts2 = tf.split(acts, [2, -1, 3], axis=-1)
        m = tf.reshape(tf.transpose(tf.concat(parts + parts2, -1), [0, 3, 1, 2]), [1, -1, 36])
        e = tf.einsum("bik,bjk->bij", m[:, :6, :24], m[:, 6:12, :24])
        mm = tf.matmul(tf.reshape(m[:, :4, :24], [4, 24]), dense)
        bmm = tf.matmul(m[:, :3, :], m[:, 3:6, :], adjoint_b=True)
        red = tf.concat([tf.reduce_mean(a, [1, 2]), tf.reduce_sum(a, [1, 2]) / 36.0,
                         tf.reduce_max(a, [1, 2]), tf.reduce_min(a, [1, 2]),
                         tf.reduce_prod(tf.sigmoid(a), [1, 2], keepdims=True)[:, 0, 0]], -1)
        g = tf.gather(red, idx, axis=1)
        pos = tf.abs(red) + 0.5
        ar = tf.concat([tf.math.rsqrt(pos), tf.square(red), tf.math.squared_difference(red, g[:, :1]),
                        pos ** 1.5, tf.maximum(red, 0.2), tf.minimum(red, -0.1), -tf.exp(-pos),
                        tf.math.log(pos), tf.sqrt(pos), tf.math.floordiv(red, 0.7),
                        tf.math.floormod(red, 0.7), tf.clip_by_value(red, -1.0, 1.0),
                        tf.where(red > 0, red, 0.5 * red), tf.math.cumsum(red, axis=1),
                        tf.cast(tf.one_hot(tf.argmax(red, axis=1), 16), tf.float32),
                        tf.add_n([red, 2.0 * red, tf.abs(red)])], axis=1)
        tiles = tf.tile(tf.expand_dims(tf.squeeze(p[:, :1, :1, :4], [1, 2]), 0), [2, 3, 1])
        filled = tf.fill(tf.shape(tiles)[1:], 0.25) + tf.cast(tf.range(4), tf.float32)
        mirror = tf.pad(p, [[0, 0], [2, 2], [1, 2], [0, 0]], "REFLECT")
        padded = tf.pad(p, [[0, 0], [1, 0], [0, 2], [0, 0]], constant_values=-1.5)
        return {"resized": out1, "slices": tf.concat([tf.reshape(s, [-1]), tf.reshape(t, [-1]),
                                                      tf.reshape(u, [-1]), tf.reshape(v, [-1])], 0),
                "conv": tf.concat([tf.reshape(dil, [-1]), tf.reshape(mirror, [-1]),
                                   tf.reshape(padded, [-1])], 0),
                "products": tf.concat([tf.reshape(e, [-1]), tf.reshape(mm, [-1]),
                                       tf.reshape(bmm, [-1])], 0),
                "math": ar, "softmax": tf.nn.softmax(red) + tf.nn.log_softmax(red),
                "tiles": tiles * filled}

    fn = zoo.get_concrete_function()
    x = (np.random.default_rng(4).standard_normal((1, 12, 12, 3)) * 1.5).astype(np.float32)
    return fn, x


def _zoo_graph(tf, tmp_path: Path, suffix: str) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    fn, x = _op_zoo(tf)
    path = _write_graph(tf, _freeze(tf, fn), tmp_path / f"zoo{suffix}")
    outs = fn(tf.constant(x))
    # outputs by the frozen graph's node names (the function's Identity nodes)
    ref = {t.name.split(":")[0]: outs[k].numpy()
           for k, t in zip(sorted(outs), fn.outputs)}
    return path, ref, x


def test_frozen_graphdef(tf, tmp_path):
    path, ref, x = _zoo_graph(tf, tmp_path, ".pb")
    from neo.frontends.tensorflow import tensorflow_model_inputs

    assert tensorflow_model_inputs(path) == [("image", (1, 12, 12, 3), "float32")]
    from neo.compiler import CompileOptions, compile_model
    from neo.run import run_artifact

    out = tmp_path / "art"
    compile_model(CompileOptions(framework="tensorflow", shape=None, target="x86_64",
                                 model=str(path), output=out, workdir=tmp_path))
    names, outs, _ = run_artifact(out, {"image": x})
    assert sorted(names) == sorted(ref)
    for name, got in zip(names, outs):
        assert_close(got, ref[name], f"frozen graph output {name}")


def test_frozen_graphdef_text(tf, tmp_path):
    path, ref, x = _zoo_graph(tf, tmp_path, ".pbtxt")
    got = interpret(path, {"image": [1, 12, 12, 3]}, {"image": x})
    from neo.frontends.tensorflow.loader import read_model

    names = [o.name for o in read_model(path).outputs]
    for name, g in zip(names, got):
        assert_close(g, ref[name], f".pbtxt output {name}")


# -- an LSTM/GRU classifier: TF2 While loops over tensor lists, unrolled --------------------------
def test_lstm_gru_digits(tf, keras, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)  # 8 rows of 8 pixels: a sequence of 8 steps
    y = digits.target
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8), name="rows")
    h = keras.layers.LSTM(24, return_sequences=True)(inp)
    h = keras.layers.GRU(16, go_backwards=True)(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x[:1400], y[:1400], epochs=4, batch_size=32, verbose=0)
    batch = x[1400:1416]
    ref = np.asarray(model(batch))
    accuracy = float((ref.argmax(1) == y[1400:1416]).mean())
    assert accuracy >= 0.5, f"the classifier did not learn (accuracy {accuracy})"
    path = tmp_path / "rnn"
    model.export(str(path), verbose=False)
    from neo.frontends.tensorflow.loader import read_model

    assert {"While", "StatelessWhile"} & {n.op for n in read_model(path).graph_def.node}
    name = read_model(path).inputs[0].name
    outs, _ = compile_and_run(path, {name: [16, 8, 8]}, {name: batch}, tmp_path)
    assert_close(outs[0], ref, "LSTM/GRU")
    assert (np.asarray(outs[0]).argmax(1) == ref.argmax(1)).all()


def test_nchw_graph(tf, tmp_path):
    """data_format NCHW (graphs written for GPUs): convs, pools, bias and batch norm keep it in
    the IR. TensorFlow's CPU kernels cannot run it, so the reference is the NHWC equivalent."""
    r = np.random.default_rng(7)
    k = tf.constant(r.standard_normal((3, 3, 4, 6)).astype(np.float32) * 0.4)
    kd = tf.constant(r.standard_normal((3, 3, 6, 1)).astype(np.float32) * 0.4)
    b = tf.constant(r.standard_normal(6).astype(np.float32))
    bn = [tf.constant(v.astype(np.float32)) for v in (
        r.uniform(0.5, 1.5, 6), r.standard_normal(6), r.standard_normal(6), r.uniform(0.5, 2, 6))]

    def net(x, fmt):
        strides = [1, 1, 2, 2] if fmt == "NCHW" else [1, 2, 2, 1]
        y = tf.nn.bias_add(tf.nn.conv2d(x, k, strides, "SAME", data_format=fmt), b,
                           data_format=fmt)
        y = tf.compat.v1.nn.fused_batch_norm(y, *bn, epsilon=1e-3, is_training=False,
                                             data_format=fmt)[0]
        y = tf.nn.depthwise_conv2d(tf.nn.relu(y), kd, [1, 1, 1, 1], "VALID", data_format=fmt)
        return (tf.nn.max_pool2d(y, 2, 2, "VALID", data_format=fmt)
                + tf.nn.avg_pool2d(y, 3, 2, "SAME", data_format=fmt))  # both 3x3

    fn = tf.function(lambda x: net(x, "NCHW")).get_concrete_function(
        tf.TensorSpec((1, 4, 15, 15), tf.float32, name="x"))
    path = _write_graph(tf, _freeze(tf, fn), tmp_path / "nchw.pb")
    x = r.standard_normal((1, 4, 15, 15)).astype(np.float32)
    ref = tf.transpose(net(tf.transpose(x, [0, 2, 3, 1]), "NHWC"), [0, 3, 1, 2]).numpy()
    from neo.frontends.tensorflow import import_tensorflow

    g = import_tensorflow(path, {"x": (1, 4, 15, 15)})
    assert {n.attrs["layout"] for n in g.nodes if n.op in ("conv", "max_pool")} == {"NCHW"}
    assert_close(interpret(path, {"x": [1, 4, 15, 15]}, {"x": x})[0], ref, "NCHW graph")


# -- a TF1 SavedModel ------------------------------------------------------------------------
def test_tf1_saved_model(tf, tmp_path):
    """A SavedModel written by TF1's simple_save from a graph with variables."""
    tf1 = tf.compat.v1
    r = np.random.default_rng(6)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 8, 8, 3], name="x")
        w = tf1.get_variable("w", initializer=r.standard_normal((3, 3, 3, 4)).astype(np.float32))
        b = tf1.get_variable("b", initializer=r.standard_normal(4).astype(np.float32))
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b))
        z = tf.reduce_mean(y, [1, 2], name="z")
        feed = r.standard_normal((2, 8, 8, 3)).astype(np.float32)
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.saved_model.simple_save(sess, str(tmp_path / "tf1"), {"x": x}, {"z": z})
            ref = sess.run(z, {x: feed})
    from neo.frontends.tensorflow import tensorflow_model_inputs

    assert tensorflow_model_inputs(tmp_path / "tf1") == [("x", (None, 8, 8, 3), "float32")]
    got = interpret(tmp_path / "tf1", {"x": [2, 8, 8, 3]}, {"x": feed})
    assert_close(got[0], ref, "TF1 SavedModel")


# -- two inputs, two outputs, two signatures ----------------------------------------------------
def _two_in_two_out(tf, keras, path: Path):
    keras.utils.set_random_seed(1)
    img = keras.Input((16, 16, 3), name="img")
    meta = keras.Input((5,), name="meta")
    h = keras.layers.Conv2D(8, 3, activation="relu")(img)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.SeparableConv2D(12, 3, strides=2, padding="same")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    m = keras.layers.Dense(12, activation="tanh", name="meta_dense")(meta)
    joined = keras.layers.Concatenate()([h, m])
    logits = keras.layers.Dense(4, name="logits")(joined)
    embed = keras.layers.LayerNormalization()(keras.layers.Dense(6)(joined))
    model = keras.Model([img, meta], [logits, embed])
    r = np.random.default_rng(5)
    calib = [r.standard_normal((8, 16, 16, 3)).astype(np.float32),
             r.standard_normal((8, 5)).astype(np.float32)]
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    bn[0].momentum = 0.0
    model(calib, training=True)
    module = tf.Module()
    module.weights = list(model.variables)

    @tf.function(input_signature=[tf.TensorSpec((None, 16, 16, 3), tf.float32, name="image"),
                                  tf.TensorSpec((None, 5), tf.float32, name="meta")])
    def serve(image, meta):
        a, b = model([image, meta], training=False)
        return {"scores": a, "embedding": b}

    @tf.function(input_signature=[tf.TensorSpec((None, 5), tf.float32, name="meta")])
    def meta_only(meta):
        return {"hidden": model.get_layer("meta_dense")(meta)}

    module.serve, module.meta_only = serve, meta_only
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve,
                                                        "meta_features": meta_only})
    x = [r.standard_normal((2, 16, 16, 3)).astype(np.float32),
         r.standard_normal((2, 5)).astype(np.float32)]
    ref = {k: v.numpy() for k, v in serve(*map(tf.constant, x)).items()}
    return x, ref


def test_two_inputs_two_outputs(tf, keras, tmp_path):
    path = tmp_path / "two"
    x, ref = _two_in_two_out(tf, keras, path)
    shapes = {"image": [2, 16, 16, 3], "meta": [2, 5]}
    outs, info = compile_and_run(path, shapes, {"image": x[0], "meta": x[1]}, tmp_path)
    names = [o["name"] for o in info["outputs"]]
    assert names == ["embedding", "scores"]  # the signature's keys, sorted as TensorFlow does
    for name, got in zip(names, outs):
        assert_close(got, ref[name], f"output {name}")


# -- layout ----------------------------------------------------------------------------------
def test_no_transposes_between_convs(tf, keras, tmp_path):
    """An NHWC Keras CNN keeps its convs NHWC in the IR; after the layout pass only the
    transpose of the input is left."""
    keras.utils.set_random_seed(2)
    inp = keras.Input((20, 20, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU(6.0)(h)
    d = keras.layers.DepthwiseConv2D(3, padding="same")(h)
    h = keras.layers.Add()([h, d])
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(16, 1, activation="swish")(h)
    h = keras.layers.UpSampling2D(interpolation="bilinear")(h)
    h = keras.layers.Conv2D(4, 3, strides=2)(h)
    out = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, out)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, 20, 20, 3), tf.float32, name="x"))
    path = _write_graph(tf, _freeze(tf, fn), tmp_path / "cnn.pb")
    from neo.frontends.tensorflow import import_tensorflow
    from neo.passes import convert_layout

    g = import_tensorflow(path, {"x": (1, 20, 20, 3)})
    convs = [n for n in g.nodes if n.op == "conv"]
    assert len(convs) == 4 and all(n.attrs["layout"] == "NHWC" for n in convs)
    g2 = convert_layout(g)
    transposes = [n for n in g2.nodes if n.op == "transpose"]
    assert len(transposes) == 1 and transposes[0].inputs[0] is g2.inputs[0], [
        (n.name, n.inputs[0].name) for n in transposes]
    x = np.random.default_rng(0).standard_normal((1, 20, 20, 3)).astype(np.float32)
    from neo.ir.interpreter import interpret as run

    assert_close(run(g2, {"x": x})[0], fn(tf.constant(x)).numpy(), "layout-converted CNN")


# -- what Neo does not compile, reported at once ----------------------------------------------
def test_unsupported_ops_listed_at_once(tf, tmp_path):
    @tf.function(input_signature=[tf.TensorSpec((2, 6), tf.float32, name="x")])
    def f(x):
        return {"a": tf.math.lgamma(x) + tf.math.digamma(x + 3.0),
                "b": tf.nn.top_k(x, 2).values, "c": tf.math.lgamma(2 * x)}

    path = _write_graph(tf, _freeze(tf, f.get_concrete_function()), tmp_path / "bad.pb")
    from neo.errors import UnsupportedModelError
    from neo.frontends.tensorflow import import_tensorflow

    with pytest.raises(UnsupportedModelError) as e:
        import_tensorflow(path)
    found = {op.op_type: op.count for op in e.value.ops}
    assert found == {"Lgamma": 2, "Digamma": 1, "TopKV2": 1}, found
    assert "The following operators are not implemented" in str(e.value)


def test_tf1_control_flow_is_named(tf, keras, tmp_path):
    """A graph with TF1 loops (Enter/Exit/Merge/Switch cycles) is refused with what to do."""
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    inp = keras.Input((5, 3))
    model = keras.Model(inp, keras.layers.GRU(4)(inp))
    fn = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec((1, 5, 3)))
    lowered = convert_variables_to_constants_v2(fn, lower_control_flow=True)
    path = _write_graph(tf, lowered.graph.as_graph_def(), tmp_path / "tf1.pb")
    from neo.errors import UnsupportedModelError
    from neo.frontends.tensorflow import import_tensorflow

    with pytest.raises(UnsupportedModelError) as e:
        import_tensorflow(path)
    ops = {op.op_type for op in e.value.ops}
    assert {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"} <= ops
    assert "TF1 control flow" in (e.value.hint or "")


# -- the command line ------------------------------------------------------------------------
def test_cli_signatures_inspect_and_archive(tf, keras, tmp_path):
    from test_cli import assert_error, assert_ok, neo

    path = tmp_path / "two"
    x, _ = _two_in_two_out(tf, keras, path)
    proc = neo("inspect", path, "--json")
    assert_ok(proc)
    info = json.loads(proc.stdout)
    assert info["framework"] == "tensorflow"
    assert [i["name"] for i in info["inputs"]] == ["image", "meta"]
    assert info["details"]["signature"] == "serving_default"
    assert info["details"]["signatures"] == "meta_features, serving_default"
    assert info["unsupported"] == []
    # Neo's packaging: a .tar.gz holding the SavedModel directory
    import tarfile

    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(path, arcname="export/1")
    proc = neo("compile", archive, "--framework", "tensorflow", "--signature", "meta_features",
               "--shape", '{"meta":[2,5]}', "--target", "x86_64", "-o", tmp_path / "out",
               "--json")
    assert_ok(proc)
    res = json.loads(proc.stdout)
    assert [i["name"] for i in res["inputs"]] == ["meta"]
    assert [o["name"] for o in res["outputs"]] == ["hidden"]
    np.save(tmp_path / "meta.npy", x[1])
    proc = neo("run", tmp_path / "out", "--input", f"meta={tmp_path / 'meta.npy'}", "--output",
               tmp_path / "o.npz")
    assert_ok(proc)
    fn = tf.saved_model.load(str(path)).signatures["meta_features"]
    assert_close(np.load(tmp_path / "o.npz")["hidden"], fn(meta=tf.constant(x[1]))["hidden"],
                 "signature meta_features")
    # mistakes: an unknown signature, a signature for another framework, a NCHW-looking shape
    proc = neo("compile", path, "--framework", "onnx", "--signature", "x", "--target", "x86_64",
               "-o", tmp_path / "bad")
    assert_error(proc, 2, "--signature applies to TensorFlow")
    from neo.compiler import CompileOptions, compile_model
    from neo.errors import UsageError

    def compile_(shape: str, **kw):
        compile_model(CompileOptions(framework="tensorflow", shape=shape, target="x86_64",
                                     model=str(path), output=tmp_path / "bad", **kw))

    with pytest.raises(UsageError, match="no signature 'nope'.*meta_features, serving_default"):
        compile_('{"meta":[2,5]}', signature="nope")
    with pytest.raises(UsageError, match="looks like NCHW.*NHWC"):
        compile_('{"image":[2,3,16,16],"meta":[2,5]}')
    assert not (tmp_path / "bad").exists()


def test_cli_without_tensorflow(tmp_path):
    """Without tensorflow installed: one line saying how to install it, exit 3."""
    (tmp_path / "m.pb").write_bytes(b"\x00")
    code = ("import sys; sys.modules['tensorflow'] = None; from neo.main import main; "
            f"main(['compile', {str(tmp_path / 'm.pb')!r}, '--framework', 'tensorflow', "
            "'--target', 'x86_64', '-o', 'out'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr
    assert "pip install 'neo-compiler[tensorflow]'" in proc.stderr
    assert "Traceback" not in proc.stderr
