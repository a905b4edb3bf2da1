"""TFLite test models, made with TensorFlow's converter (tests/test_tflite.py builds them once per
session), LiteRT as the reference interpreter, and flatbuffer edits for the error cases.

Random networks give near-constant outputs (STYLE.md point 13), so every BatchNormalization gets
the statistics of a batch of ImageNet-like images (momentum 0 and one training-mode call: the
moving statistics become that batch's).
"""
from __future__ import annotations

import numpy as np

# keras.applications architectures and their input size (the smallest that keeps every stage)
APPLICATIONS = {"MobileNetV2": 96, "MobileNetV3Small": 96, "EfficientNetB0": 96}
VARIANTS = ("float", "fp16", "dynamic", "int8")


def nhwc_images(seed: int, n: int, size: int) -> np.ndarray:
    """ImageNet-normalized-like images (blocks of colour plus noise), NHWC float32."""
    from conftest import imagenet_like

    x = imagenet_like(seed, "smooth", (n, 3, size, size))
    return np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))


def noise_images(seed: int, n: int, size: int) -> np.ndarray:
    from conftest import imagenet_like

    return np.ascontiguousarray(np.transpose(imagenet_like(seed, "noise", (n, 3, size, size)),
                                             (0, 2, 3, 1)))


def _keras():
    import keras

    return keras


def calibrate(model, batch: np.ndarray) -> None:
    keras = _keras()
    layers = []

    def walk(m):
        for layer in m.layers:
            layers.append(layer)
            if hasattr(layer, "layers"):
                walk(layer)

    walk(model)
    saved = []
    for layer in layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            saved.append((layer, layer.momentum))
            layer.momentum = 0.0
    model(batch, training=True)
    for layer, momentum in saved:
        layer.momentum = momentum


def application(name: str):
    """keras.applications.<name>(weights=None), logits out, calibrated BatchNorm."""
    keras = _keras()
    keras.utils.set_random_seed(7)
    size = APPLICATIONS[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    # smooth images and white noise: statistics that leave no channel near-constant (a
    # channel of tiny variance, scaled up by its BatchNorm, amplifies float32 rounding)
    calibrate(model, np.concatenate([nhwc_images(1000, 8, size), noise_images(1001, 8, size)]))
    return model


def convert(model, variant: str, representative: np.ndarray | None = None) -> bytes:
    """The model through tf.lite.TFLiteConverter: float, fp16 (float16 weights), dynamic (int8
    weights, float activations) or int8 (int8 activations and weights, calibrated on
    `representative`, int8 input and output)."""
    import tensorflow as tf

    c = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant != "float":
        c.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        c.target_spec.supported_types = [tf.float16]
    if variant == "int8":
        def data():
            for i in range(representative.shape[0]):
                yield [representative[i:i + 1]]

        c.representative_dataset = data
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        c.inference_input_type = tf.int8
        c.inference_output_type = tf.int8
    return c.convert()


# -- small models ----------------------------------------------------------------------------------
def lstm_model():
    """A small sequence classifier: LSTM (all steps) -> LSTM (last step) -> Dense. Built with
    Keras 2 (tf_keras), whose LSTM the converter fuses into UNIDIRECTIONAL_SEQUENCE_LSTM (a Keras 3
    LSTM becomes a WHILE loop)."""
    import tf_keras

    tf_keras.utils.set_random_seed(11)
    inp = tf_keras.Input((12, 8), batch_size=1, name="sequence")
    x = tf_keras.layers.LSTM(32, return_sequences=True)(inp)
    x = tf_keras.layers.LSTM(40)(x)  # weights of 1280 and 1600 elements: dynamic-range int8
    out = tf_keras.layers.Dense(5)(x)
    return tf_keras.Model(inp, out)


def resize_model():
    """Resizes in every coordinate mode, DEPTH_TO_SPACE and SPACE_TO_DEPTH on one image."""
    import tensorflow as tf

    keras = _keras()
    keras.utils.set_random_seed(12)
    inp = keras.Input((12, 10, 8), batch_size=1, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
    parts = []
    for method, align, half in (("bilinear", False, True), ("bilinear", True, False),
                                ("bilinear", False, False), ("nearest", False, True),
                                ("nearest", True, False), ("nearest", False, False)):
        if method == "bilinear":
            y = keras.layers.Lambda(lambda v, a=align, h=half: tf.compat.v1.image.resize_bilinear(
                v, (17, 23), align_corners=a, half_pixel_centers=h))(x)
        else:
            y = keras.layers.Lambda(lambda v, a=align, h=half: tf.compat.v1.image.resize_nearest_neighbor(
                v, (17, 23), align_corners=a, half_pixel_centers=h))(x)
        parts.append(keras.layers.Conv2D(4, 1)(y))
    y = keras.layers.Concatenate()(parts)
    d2s = keras.layers.Lambda(lambda v: tf.nn.depth_to_space(v, 2))(x)  # 24x20x4
    s2d = keras.layers.Lambda(lambda v: tf.nn.space_to_depth(v, 2))(d2s)  # back to 12x10x16
    down = keras.layers.Lambda(lambda v: tf.compat.v1.image.resize_nearest_neighbor(
        v, (5, 7), half_pixel_centers=True))(s2d)
    return keras.Model(inp, [y, keras.layers.Conv2D(8, 3)(d2s), down])


def two_output_model():
    """One trunk, two heads of different shapes (a classifier and a box regressor)."""
    keras = _keras()
    keras.utils.set_random_seed(13)
    inp = keras.Input((32, 32, 3), batch_size=1, name="image")
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.LeakyReLU(0.1)(x)
    scores = keras.layers.Dense(7, activation="softmax", name="scores")(
        keras.layers.GlobalAveragePooling2D()(x))
    boxes = keras.layers.Reshape((64, 8), name="boxes")(
        keras.layers.Conv2D(8, 1)(keras.layers.AveragePooling2D(2)(x)))
    model = keras.Model(inp, [scores, boxes])
    calibrate(model, nhwc_images(5, 4, 32))
    return model


def small_cnn():
    """A small int8-friendly CNN with the ops a fully-integer converter emits besides the
    applications' (pads, max and average pools, a residual SUB, a concatenation of branches
    of different scales, LOGISTIC, TANH, LEAKY_RELU, HARD_SWISH, a MUL gate, a two-axis MEAN
    without keep_dims and a Dense head), calibrated BatchNorm."""
    import tensorflow as tf

    keras = _keras()
    keras.utils.set_random_seed(15)
    L = keras.layers
    inp = keras.Input((40, 40, 3), batch_size=1, name="image")
    x = L.ZeroPadding2D(((1, 2), (2, 1)))(inp)
    x = L.Conv2D(16, 3, strides=2, use_bias=False)(x)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    x = L.MaxPooling2D(2, padding="same")(x)  # 11x11
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    y = L.LeakyReLU(0.2)(L.BatchNormalization()(y))
    z = L.Conv2D(32, 1)(y)
    r = L.Subtract()([L.Conv2D(32, 1)(x), z])  # a residual difference
    a = L.Activation("tanh")(L.Conv2D(8, 3, padding="same")(r))
    b = L.Activation(tf.nn.hard_swish if hasattr(tf.nn, "hard_swish") else "hard_swish")(
        L.Conv2D(8, 1)(r))
    g = L.Activation("sigmoid")(L.Conv2D(8, 1)(r))
    c = L.Concatenate()([a, L.Multiply()([b, g]), L.AveragePooling2D(3, 1, "same")(r)])
    c = L.Conv2D(24, 3, strides=2, activation="relu")(c)
    h = L.GlobalAveragePooling2D()(c)
    out = L.Dense(10)(h)
    model = keras.Model(inp, out)
    calibrate(model, np.concatenate([nhwc_images(21, 8, 40), noise_images(22, 8, 40)]))
    return model


def int8_ops_model():
    """The int8 ops the applications lack, on one image: an attention block (BATCH_MATMUL of two
    activations, one adj_y, SOFTMAX over 144 rows of 144 scores, LOG_SOFTMAX of a per-token
    head), RESIZE_BILINEAR in its three coordinate modes (up) and a downscale, TRANSPOSE_CONV
    (SAME and VALID, stride 2, with and without a fused RELU) and a sum over the image."""
    import tensorflow as tf

    keras = _keras()
    keras.utils.set_random_seed(16)
    L = keras.layers
    inp = keras.Input((24, 24, 3), batch_size=1, name="image")
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(inp)  # 12x12x16
    x = L.BatchNormalization()(x)
    tokens = L.Reshape((144, 16))(x)
    q, k, v = (L.Dense(16)(tokens) for _ in range(3))
    scores = L.Lambda(lambda t: tf.matmul(t[0], t[1], transpose_b=True) * 0.25)([q, k])
    attention = L.Softmax(name="attention")(scores)
    context = L.Lambda(lambda t: tf.matmul(t[0], t[1]))([attention, v])
    log_probs = L.Lambda(lambda t: tf.nn.log_softmax(t, -1), name="log_probs")(L.Dense(10)(context))
    resized = []
    for size, align, half in (((17, 23), False, True), ((17, 23), True, False),
                              ((17, 23), False, False), ((7, 5), False, True)):
        resized.append(L.Lambda(lambda t, s=size, a=align, h=half: tf.compat.v1.image.resize_bilinear(
            t, s, align_corners=a, half_pixel_centers=h))(x))
    up_same = L.Conv2DTranspose(8, 3, strides=2, padding="same")(x)  # 24x24
    up_valid = L.Conv2DTranspose(4, 4, strides=2, padding="valid", activation="relu")(x)  # 26x26
    total = L.Lambda(lambda t: tf.reduce_sum(t, axis=[1, 2]), name="sum")(x)
    model = keras.Model(inp, [attention, log_probs, *resized, up_same, up_valid, total])
    calibrate(model, np.concatenate([nhwc_images(31, 8, 24), noise_images(32, 8, 24)]))
    return model


def prod_model():
    """int8 REDUCE_PROD (over one axis and over two with keep_dims: 4 and 20 terms, each
    rescaled) beside a LOG_SOFTMAX, on positive values near 1 so the products stay in range."""
    import tensorflow as tf

    keras = _keras()
    L = keras.layers
    inp = keras.Input((4, 5, 6), batch_size=1, name="x")
    p1 = L.Lambda(lambda t: tf.reduce_prod(t, axis=[1]), name="prod1")(inp)
    p2 = L.Lambda(lambda t: tf.reduce_prod(t, axis=[1, 2], keepdims=True), name="prod2")(inp)
    ls = L.Lambda(lambda t: tf.nn.log_softmax(t * 3.0, -1), name="log_softmax")(inp)
    return keras.Model(inp, [p1, p2, ls])


def positive_values(seed: int, n: int) -> np.ndarray:
    """prod_model's inputs: [n, 4, 5, 6] in [0.5, 1.6)."""
    return np.random.default_rng(seed).uniform(0.5, 1.6, (n, 4, 5, 6)).astype(np.float32)


def log_softmax_model():
    """A LOG_SOFTMAX over rows of 40 (for the uint8 copy: as_uint8)."""
    import tensorflow as tf

    keras = _keras()
    inp = keras.Input((6, 40), batch_size=1, name="x")
    out = keras.layers.Lambda(lambda t: tf.nn.log_softmax(t, -1), name="log_softmax")(inp)
    return keras.Model(inp, out)


def as_uint8(model: bytes) -> bytes:
    """An int8 model whose ops all have uint8 kernels (LOG_SOFTMAX) as the uint8 model an older
    converter made: every int8 tensor uint8, its zero points 128 higher (LiteRT runs uint8
    LOG_SOFTMAX with output zero point 255)."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    for sg in m.subgraphs:
        for t in sg.tensors:
            if t.type == fb.TensorType.INT8:
                t.type = fb.TensorType.UINT8
                t.quantization.zeroPoint = [int(z) + 128 for z in t.quantization.zeroPoint]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def refused_int8_model():
    """An int8 model with an op that has no integer form in Neo (SQUARED_DIFFERENCE of
    activations) beside ones that have (CONV_2D, SOFTMAX)."""
    import tensorflow as tf

    keras = _keras()
    keras.utils.set_random_seed(17)
    L = keras.layers
    inp = keras.Input((16, 16, 3), batch_size=1, name="image")
    a = L.Conv2D(8, 3, strides=2, padding="same")(inp)
    b = L.Conv2D(8, 3, strides=2, padding="same")(inp)
    d = L.Lambda(lambda t: tf.math.squared_difference(t[0], t[1]))([a, b])
    out = L.Softmax()(L.Dense(5)(L.GlobalAveragePooling2D()(d)))
    return keras.Model(inp, out)


def ops_model():
    """A graph of the data-movement, arithmetic and reduction builtins a converter emits for
    tf.* calls (strided slices with every mask, pads, gathers, splits, packs, ...)."""
    import tensorflow as tf

    rng = np.random.default_rng(14)
    w = tf.constant(rng.standard_normal((3, 3, 6, 8)).astype(np.float32) * 0.3)
    idx = tf.constant([3, 0, 2, 2], tf.int32)

    @tf.function(input_signature=[tf.TensorSpec((2, 9, 10, 6), tf.float32, name="x")])
    def f(x):
        y = tf.nn.conv2d(x, w, 1, "SAME")
        a = y[:, 1:8:2, ::-1, 2:]  # begin/end masks, negative stride
        a = a[..., tf.newaxis, 1]  # ellipsis, new axis, shrink
        b = tf.pad(y, [[0, 0], [1, 2], [0, 1], [0, 0]])
        c = tf.pad(y, [[0, 0], [2, 1], [1, 1], [0, 0]], mode="REFLECT")
        d = tf.pad(y, [[0, 0], [1, 2], [2, 0], [0, 0]], mode="SYMMETRIC")
        p, q = tf.split(y, 2, axis=3)
        r = tf.concat(tf.unstack(p, axis=0), axis=2)
        s = tf.stack([tf.reduce_max(q, axis=[1, 2]), tf.reduce_min(q, axis=[1, 2]),
                      tf.reduce_mean(q, axis=[1, 2]), tf.reduce_sum(tf.abs(q), axis=[1, 2]),
                      tf.reduce_prod(tf.sigmoid(q), axis=[1, 2])], axis=1)
        g = tf.gather(y, idx, axis=3)
        t = tf.tile(s[:, :1], [1, 3, 1])
        e = tf.math.squared_difference(tf.maximum(g, 0.1), tf.minimum(g, -0.2)) / (1 + tf.exp(-g))
        e = tf.nn.elu(e) - tf.nn.relu6(g) + tf.nn.gelu(g) + tf.math.rsqrt(1.5 + tf.square(g))
        am = tf.argmax(tf.reshape(y, (2, -1)), axis=1, output_type=tf.int32)
        sp = tf.split(y, [3, 1, 4], axis=3)
        out = tf.reduce_sum(a) + tf.reduce_sum(b * 0.5) + tf.reduce_sum(c) + tf.reduce_sum(d)
        return {"out": out, "r": r, "s": s + tf.reduce_mean(t), "e": tf.nn.log_softmax(e, -1),
                "argmax": am, "split": tf.transpose(sp[2], (0, 3, 1, 2)) + tf.transpose(sp[1], (0, 3, 1, 2)),
                "mirror": d}

    return f


def convert_function(fn) -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()], fn).convert()


# -- LiteRT ----------------------------------------------------------------------------------------
# LiteRT's kernel sets: "default" (XNNPACK delegate), "builtin" (its optimized kernels, no
# delegate), "reference" (its reference kernels: the arithmetic fully-integer models follow)
KERNELS = {"default": "AUTO", "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
           "reference": "BUILTIN_REF"}


def litert(model: bytes | str, feeds: dict[str, np.ndarray], threads: int = 1,
           kernels: str = "default") -> dict[str, np.ndarray]:
    """Every output of the model under LiteRT (a fresh interpreter), by tensor name."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kw = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    it = Interpreter(num_threads=threads, **kw,
                     experimental_op_resolver_type=getattr(OpResolverType, KERNELS[kernels]))
    for d in it.get_input_details():
        if tuple(d["shape"]) != feeds[d["name"]].shape:
            it.resize_tensor_input(d["index"], feeds[d["name"]].shape)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], feeds[d["name"]])
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}


def quantize_input(model: bytes | str, x: np.ndarray) -> np.ndarray:
    """A float input in the model's quantized input type (its scale and zero point)."""
    from ai_edge_litert.interpreter import Interpreter

    kw = {"model_content": model} if isinstance(model, bytes) else {"model_path": str(model)}
    d = Interpreter(**kw).get_input_details()[0]
    scale, zp = d["quantization"]
    info = np.iinfo(d["dtype"])
    return np.clip(np.round(x / scale) + zp, info.min, info.max).astype(d["dtype"])


# -- flatbuffer edits ------------------------------------------------------------------------------
def dequantized_copy(model: bytes) -> bytes:
    """The dynamic-range model with its int8 weights replaced by their float32 values
    (scale * (q - zero_point), per channel): what Neo compiles, as LiteRT runs it in float."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    for sg in m.subgraphs:
        for t in sg.tensors:
            buf = m.buffers[t.buffer]
            if t.type != fb.TensorType.INT8 or buf.data is None or t.quantization is None:
                continue
            q = np.frombuffer(bytes(buf.data), np.int8).reshape(t.shape).astype(np.float32)
            scale = np.asarray(t.quantization.scale, np.float32)
            zp = np.asarray(t.quantization.zeroPoint, np.float32)
            if scale.size > 1:
                shape = [1] * q.ndim
                shape[t.quantization.quantizedDimension] = scale.size
                scale, zp = scale.reshape(shape), zp.reshape(shape)
            buf.data = np.frombuffer(((q - zp) * scale).astype(np.float32).tobytes(), np.uint8)
            t.type = fb.TensorType.FLOAT32
            t.quantization = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def with_unsupported_ops(model: bytes) -> bytes:
    """The model with its first op turned into the custom op TFLite_Detection_PostProcess and
    its last into the builtin NON_MAX_SUPPRESSION_V5 (which Neo does not convert)."""
    from tensorflow.lite.python import schema_py_generated as fb
    from tensorflow.lite.tools import flatbuffer_utils

    m = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    ops = m.subgraphs[0].operators
    for op, code in ((ops[0], fb.BuiltinOperator.CUSTOM),
                     (ops[-1], fb.BuiltinOperator.NON_MAX_SUPPRESSION_V5)):
        oc = fb.OperatorCodeT()
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)
        oc.version = 1
        if code == fb.BuiltinOperator.CUSTOM:
            oc.customCode = "TFLite_Detection_PostProcess"
        m.operatorCodes.append(oc)
        op.opcodeIndex = len(m.operatorCodes) - 1
        op.builtinOptionsType = 0
        op.builtinOptions = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(m))


def while_model() -> bytes:
    """A model with control flow: a tf.while_loop becomes a WHILE op over two subgraphs."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((1, 4), tf.float32, name="x"),
                                  tf.TensorSpec((), tf.int32, name="n")])
    def f(x, n):
        _, y = tf.while_loop(lambda i, v: i < n, lambda i, v: (i + 1, v * 1.5 + 1.0), [0, x])
        return tf.nn.relu(y)

    return convert_function(f)
