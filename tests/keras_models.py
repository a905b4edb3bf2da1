"""Keras test models, built with Keras 3 (`import keras`) or Keras 2 (`import tf_keras`).

Shared by tests/test_keras.py (models generated at test time) and scripts/keras_fixtures.py (the
small committed fixtures in tests/data/keras/, which prove the reader needs no TensorFlow).

Random networks give near-constant outputs (STYLE.md point 13), so `calibrate` gives every
BatchNormalization the statistics of a batch of random images (momentum 0 and one training-mode
call: the moving statistics become exactly that batch's), turns dropout off for that call, and
gives ConvNeXt's LayerScale (initialized to 1e-6, which would hide every residual block below any
tolerance) weights of order one.
"""
from __future__ import annotations

import numpy as np

# keras.applications architectures: (name, input size) at the smallest sizes that keep their
# outputs informative (InceptionV3 needs 75 at least, Xception 71)
APPLICATIONS = {
    "MobileNetV2": 96, "MobileNetV3Small": 96, "ResNet50": 96, "DenseNet121": 96,
    "EfficientNetB0": 96, "InceptionV3": 96, "Xception": 96, "NASNetMobile": 96,
    "ConvNeXtTiny": 64, "VGG16": 64,
}


def nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, *range(2, x.ndim), 1)))


def image_batch(seed: int, n: int, size: int, kind: str = "noise") -> np.ndarray:
    """NCHW images distributed like ImageNet-normalized ones (tests/conftest.py)."""
    from conftest import imagenet_like

    return imagenet_like(seed, kind, (n, 3, size, size))


def all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def calibrate(keras, model, batch_nhwc, seed: int = 0) -> None:
    bn = keras.layers.BatchNormalization
    rng = np.random.default_rng(seed)
    saved = []
    for layer in all_layers(model):
        if isinstance(layer, bn):
            saved.append((layer, "momentum", layer.momentum))
            layer.momentum = 0.0
        elif isinstance(layer, keras.layers.Dropout):
            saved.append((layer, "rate", layer.rate))
            layer.rate = 0.0
        elif type(layer).__name__ == "LayerScale":
            layer.gamma.assign(rng.uniform(0.3, 1.0, layer.gamma.shape).astype("float32"))
    model(batch_nhwc, training=True)
    for layer, attr, value in saved:
        setattr(layer, attr, value)


def application(keras, name: str, size: int):
    """keras.applications.<name>(weights=None), logits out, calibrated, classifier centered.
    Seeded: a failure reproduces (the weights were drawn anew in every run)."""
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    if name in NO_NORMALIZATION:
        he_scale(keras, model)
    calibrate(keras, model, nhwc(application_input(name, 1000, 8, size, "noise")))
    center_classifier(model)
    return model


# ReLU networks without normalization layers: Glorot-initialized, each layer halves the variance
NO_NORMALIZATION = frozenset({"VGG16", "VGG19"})


def he_scale(keras, model) -> None:
    """Glorot weights times sqrt(2) (He's variance for ReLU), so that activations keep their
    scale through a deep network without normalization."""
    for layer in all_layers(model):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            kernel, *rest = layer.get_weights()
            layer.set_weights([kernel * np.sqrt(2.0), *rest])


def center_classifier(model) -> None:
    """Make each class's weights sum to zero over the features (tests/conftest.py does that for
    squeezenet): a random classifier reading non-negative features otherwise picks the same class
    for every input, through the features' common mode."""
    layer = next(x for x in reversed(list(all_layers(model))) if x.get_weights())
    kernel, *rest = layer.get_weights()
    layer.set_weights([kernel - kernel.mean(axis=-2, keepdims=True), *rest])


# Models that preprocess their input themselves (Rescaling, Normalization): they expect pixels
# in [0, 255], and ImageNet-normalized values would reach them as a nearly constant image
PIXEL_INPUTS = frozenset({"MobileNetV3Small", "MobileNetV3Large", "EfficientNetB0",
                          "ConvNeXtTiny"})


def application_input(name: str, seed: int, n: int, size: int, kind: str = "smooth"
                      ) -> np.ndarray:
    """NCHW input for keras.applications.<name>: ImageNet-normalized-like, or pixels."""
    x = image_batch(seed, n, size, kind)
    if name in PIXEL_INPUTS:
        x = np.clip(127.5 + 60.0 * x, 0.0, 255.0).astype(np.float32)
    return x


def randomize_batchnorm(model, seed: int) -> None:
    """Non-trivial BatchNormalization parameters and statistics (a small model's are 1, 0)."""
    rng = np.random.default_rng(seed)
    for layer in all_layers(model):
        if type(layer).__name__ == "BatchNormalization":
            ws = layer.get_weights()
            new = []
            for w in ws[:-1]:
                new.append(rng.normal(0.0, 0.5, w.shape).astype("float32"))
            new.append(rng.uniform(0.5, 2.0, ws[-1].shape).astype("float32"))
            layer.set_weights(new)


def small_cnn(keras, tf=None):
    """A functional CNN: Rescaling, Conv2D + BatchNormalization, DepthwiseConv2D, ReLU(6),
    SeparableConv2D, a tensor op (x + 1), pooling, a nested Sequential used twice (shared
    weights), Softmax. Keras 2 (pass `tf`) records the op as a TFOpLambda."""
    layers = keras.layers
    x_in = keras.Input((16, 16, 3), name="image")
    x = layers.Rescaling(0.5, offset=-0.25)(x_in)
    x = layers.Conv2D(8, 3, padding="same", name="conv")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(6.0)(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)
    x = layers.SeparableConv2D(12, 3, padding="same", activation="swish", name="sep")(x)
    x = x + 1.0
    x = layers.MaxPooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    head = keras.Sequential([layers.Dense(8, activation="tanh"), layers.Dense(4)], name="head")
    a = head(x)
    b = head(layers.Dense(12, name="mix")(x))
    out = layers.Softmax(name="probs")(layers.Add()([a, b]))
    model = keras.Model(x_in, out, name="small_cnn")
    randomize_batchnorm(model, 1)
    scale_weights(head, 3.0)
    return model


def scale_weights(layer, factor: float) -> None:
    """Larger weights, so that small random networks do not output near-constants."""
    layer.set_weights([w * factor for w in layer.get_weights()])


def text_classifier(keras, vocab: int = 50, steps: int = 12, classes: int = 3):
    """Embedding, Bidirectional LSTM (sequences), GRU, Dense softmax."""
    layers = keras.layers
    tokens = keras.Input((steps,), dtype="int32", name="tokens")
    x = layers.Embedding(vocab, 16, name="embed")(tokens)
    x = layers.Bidirectional(layers.LSTM(12, return_sequences=True), name="bilstm")(x)
    x = layers.GRU(10, name="gru")(x)
    out = layers.Dense(classes, activation="softmax", name="probs")(x)
    model = keras.Model(tokens, out, name="text_classifier")
    embed = model.get_layer("embed")
    rng = np.random.default_rng(3)
    embed.set_weights([rng.normal(0.0, 1.0, (vocab, 16)).astype("float32")])
    scale_weights(model.get_layer("probs"), 4.0)
    return model


def token_batch(seed: int, n: int, vocab: int = 50, steps: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, (n, steps)).astype(np.int32)


def recurrent_zoo(keras, vocab: int = 40, steps: int = 9):
    """LSTM/GRU/SimpleRNN with return_sequences, return_state, go_backwards, initial_state,
    GRU without reset_after, and Bidirectional with every merge mode."""
    layers = keras.layers
    tokens = keras.Input((steps,), dtype="int32", name="tokens")
    e = layers.Embedding(vocab, 8, name="embed")(tokens)
    a = layers.LSTM(6, return_sequences=True, go_backwards=True, name="lstm_back")(e)
    b, h, c = layers.LSTM(5, return_state=True, name="lstm_state")(e)
    g = layers.GRU(4, reset_after=False, return_sequences=True, name="gru_v1")(a)
    s = layers.SimpleRNN(3, activation="relu", name="rnn_relu")(g)
    init = layers.LSTM(5, name="lstm_init")(e, initial_state=[h, c])
    bi_sum = layers.Bidirectional(layers.GRU(4), merge_mode="sum", name="bi_sum")(e)
    bi_ave = layers.Bidirectional(layers.SimpleRNN(3, return_sequences=True), merge_mode="ave",
                                  name="bi_ave")(e)
    bi_mul = layers.Bidirectional(layers.LSTM(3), merge_mode="mul", name="bi_mul")(e)
    feats = layers.Concatenate(name="feats")([b, h, c, s, init, bi_sum, layers.Flatten()(bi_ave),
                                              bi_mul])
    out = layers.Dense(4, activation="softmax", name="probs")(feats)
    model = keras.Model(tokens, [out, bi_ave], name="recurrent_zoo")
    rng = np.random.default_rng(5)
    model.get_layer("embed").set_weights([rng.normal(0, 1, (vocab, 8)).astype("float32")])
    scale_weights(model.get_layer("probs"), 3.0)
    return model


def attention_model(keras, steps: int = 10, width: int = 16):
    """A transformer block: self-attention with a causal mask, a residual and LayerNormalization,
    cross-attention with an attention mask input and its scores, a feed-forward Dense on 3-D
    tensors, global pooling."""
    layers = keras.layers
    x = keras.Input((steps, width), name="x")
    mask = keras.Input((steps, steps), name="mask")
    y = layers.MultiHeadAttention(num_heads=4, key_dim=8, value_dim=6, name="self_attn")(
        x, x, use_causal_mask=True)
    z = layers.LayerNormalization(epsilon=1e-5, name="ln1")(layers.Add()([x, y]))
    cross, scores = layers.MultiHeadAttention(num_heads=2, key_dim=5, use_bias=False,
                                              name="cross_attn")(
        z, x, x, attention_mask=mask, return_attention_scores=True)
    f = layers.Dense(32, activation="gelu", name="ff1")(cross)
    f = layers.Dense(width, name="ff2")(f)
    out = layers.LayerNormalization(name="ln2")(layers.Add()([z, f]))
    pooled = layers.GlobalAveragePooling1D()(out)
    logits = layers.Dense(5, name="logits")(pooled)
    return keras.Model([x, mask], [logits, scores], name="attention")


def two_in_two_out(keras):
    """Two inputs, two outputs, a layer shared by both branches and a nested functional model
    called twice."""
    layers = keras.layers
    img = keras.Input((24, 24, 3), name="image")
    meta = keras.Input((5,), name="meta")
    x = layers.Conv2D(8, 3, strides=2, activation="relu", name="conv")(img)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.GlobalMaxPooling2D(name="gmp")(x)
    m = layers.Dense(8, name="meta_proj")(meta)
    shared = layers.Dense(8, activation="tanh", name="shared")
    a, b = shared(x), shared(m)
    inner_in = keras.Input((8,), name="inner_in")
    inner_out = layers.Dense(4, name="inner_dense")(
        layers.Dense(8, activation="relu", name="inner_hidden")(inner_in))
    inner = keras.Model(inner_in, inner_out, name="inner")
    cls = layers.Softmax(name="class")(layers.Add(name="sum")([inner(a), inner(b)]))
    score = layers.Dense(1, name="score")(layers.Concatenate(name="cat")([a, b]))
    model = keras.Model([img, meta], [cls, score], name="two_in_two_out")
    randomize_batchnorm(model, 2)
    scale_weights(inner, 3.0)
    return model


def _k3(keras) -> bool:
    return keras.__name__ == "keras"


def image_layers(keras):
    """The image layers beyond the applications': strided/dilated/grouped convs, transposed
    convs, padding, cropping, up-sampling, pooling with "same", normalization variants, merge
    layers, activation layers, shape layers, preprocessing."""
    layers = keras.layers
    k3 = _k3(keras)
    inp = keras.Input((20, 20, 4), name="pixels")
    x = layers.Normalization(mean=[0.1, -0.2, 0.3, 0.0], variance=[1.0, 2.0, 0.5, 1.5],
                             name="norm")(inp)
    x = layers.Rescaling([1.0, 0.5, 2.0, 1.5], offset=0.1, name="rescale")(x)
    c1 = layers.Conv2D(8, 3, strides=2, padding="same", name="conv_s2")(x)
    c2 = layers.Conv2D(8, 3, dilation_rate=2, padding="same", groups=2, activation="elu",
                       name="conv_dil_grouped")(x)
    c2 = layers.MaxPooling2D(3, strides=2, padding="same", name="maxpool_same")(c2)
    y = layers.Concatenate(name="cat")([c1, c2])  # 10x10x16
    y = layers.BatchNormalization(center=False, name="bn_no_center")(y)
    y = layers.PReLU(shared_axes=[1, 2], name="prelu")(y)
    t1 = layers.Conv2DTranspose(6, 3, strides=2, padding="same", name="deconv_same")(y)  # 20
    t2 = layers.Conv2DTranspose(6, 3, strides=2, padding="valid", output_padding=1,
                                name="deconv_valid")(y)  # 22
    t2 = layers.Cropping2D(((1, 1), (2, 0)), name="crop")(t2)  # 20x20
    t = layers.Subtract(name="sub")([t1, t2])
    t = layers.ZeroPadding2D(((1, 2), (0, 1)), name="pad")(t)  # 23x21
    t = layers.AveragePooling2D(3, strides=2, padding="same", name="avgpool_same")(t)  # 12x11
    s = layers.SeparableConv2D(8, 3, depth_multiplier=2, padding="same", activation="relu",
                               name="sep")(t)
    d = layers.DepthwiseConv2D(3, depth_multiplier=2, name="dw_valid")(t)  # 10x9x12
    d = layers.UpSampling2D(2, name="up_nearest")(d)  # 20x18
    d = layers.UpSampling2D((1, 2), interpolation="bilinear", name="up_bilinear")(d)  # 20x36
    d = layers.GlobalAveragePooling2D(keepdims=True, name="gap_keep")(d)
    s = layers.BatchNormalization(scale=False, name="bn_no_scale")(s)
    s = layers.ReLU(max_value=4.0, threshold=0.2, negative_slope=0.1, name="relu_full")(s)
    m = layers.Multiply(name="mul")([s, layers.Dense(8, name="dense_4d")(d)])
    m = layers.LeakyReLU(**({"negative_slope": 0.15} if k3 else {"alpha": 0.15}),
                         name="leaky")(m)
    m = layers.LayerNormalization(axis=[1, 2, 3], name="ln_all")(m)
    n = layers.Maximum(name="max")([m, layers.ELU(0.5, name="elu")(m)])
    n = layers.Minimum(name="min")([n, layers.Average(name="avg")([m, n])])
    p = layers.Permute((2, 1, 3), name="permute")(n)  # 11x12x8
    r = layers.Reshape((-1, 8), name="reshape")(p)
    r = layers.Softmax(axis=1, name="softmax_axis1")(r)
    f = layers.Flatten(name="flatten")(layers.GlobalMaxPooling2D(keepdims=True)(n))
    f = layers.RepeatVector(3, name="repeat")(f)
    return keras.Model(inp, [r, f, layers.Activation("sigmoid", name="sig")(t)],
                       name="image_layers")


def sequence_layers(keras):
    """Conv1D (causal, dilated, strided), its pools, padding, cropping, up-sampling, transposed
    and separable 1-D convs."""
    layers = keras.layers
    inp = keras.Input((32, 5), name="signal")
    x = layers.Conv1D(8, 3, padding="causal", dilation_rate=2, activation="tanh",
                      name="causal")(inp)
    x = layers.Conv1D(8, 5, strides=2, padding="same", name="strided")(x)  # 16
    x = layers.ZeroPadding1D((2, 1), name="pad1d")(x)  # 19
    x = layers.Cropping1D((1, 2), name="crop1d")(x)  # 16
    a = layers.MaxPooling1D(2, name="maxpool1d")(x)  # 8
    b = layers.AveragePooling1D(3, strides=2, padding="same", name="avgpool1d")(x)  # 8
    y = layers.Concatenate(name="cat1d")([a, b])
    y = layers.SeparableConv1D(6, 3, padding="same", name="sep1d")(y)
    y = layers.Conv1DTranspose(4, 3, strides=2, padding="same", name="deconv1d")(y)  # 16
    y = layers.UpSampling1D(2, name="up1d")(y)  # 32
    g = layers.GlobalAveragePooling1D(name="gap1d")(y)
    h = layers.GlobalMaxPooling1D(name="gmp1d")(y)
    return keras.Model(inp, [y, layers.Concatenate(name="pooled")([g, h])], name="sequence")


# every built-in activation of both versions, by name
ACTIVATIONS_K3 = ("relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "softplus",
                  "softsign", "exponential", "elu", "selu", "celu", "gelu", "swish", "silu",
                  "hard_sigmoid", "hard_silu", "hard_swish", "hard_tanh", "leaky_relu",
                  "log_sigmoid", "mish", "glu", "hard_shrink", "soft_shrink", "tanh_shrink",
                  "sparse_plus", "sparse_sigmoid", "squareplus", "linear")
ACTIVATIONS_K2 = ("relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "softplus",
                  "softsign", "exponential", "elu", "selu", "gelu", "swish", "silu",
                  "hard_sigmoid", "mish", "linear")


def activations_model(keras):
    layers = keras.layers
    names = ACTIVATIONS_K3 if _k3(keras) else ACTIVATIONS_K2
    inp = keras.Input((6, 8), name="values")
    outs = [layers.Activation(n, name=f"act_{n}")(inp) for n in names]
    return keras.Model(inp, outs, name="activations")


def ops_model(keras, tf=None):
    """Tensor operations inside a functional model: keras.ops (Keras 3 operations) or the same
    through tf.* (Keras 2 TFOpLambda and SlicingOpLambda layers; pass `tf`)."""
    x = keras.Input((6, 8), name="x")
    k3 = tf is None
    if k3:
        ops = keras.ops
        mean, reshape, transpose = ops.mean, ops.reshape, ops.transpose
        softmax, concat, matmul, clip = ops.softmax, ops.concatenate, ops.matmul, ops.clip
        expand, sqrt, absolute, reduce_max = ops.expand_dims, ops.sqrt, ops.abs, ops.max
        exp, squeeze, gelu, maximum, minimum = ops.exp, ops.squeeze, ops.gelu, ops.maximum, \
            ops.minimum
        sigmoid, relu, rsqrt = ops.sigmoid, ops.relu, ops.rsqrt
    else:
        mean, reshape, transpose = tf.reduce_mean, tf.reshape, tf.transpose
        softmax, concat, matmul, clip = tf.nn.softmax, tf.concat, tf.matmul, tf.clip_by_value
        expand, sqrt, absolute, reduce_max = tf.expand_dims, tf.sqrt, tf.abs, tf.reduce_max
        exp, squeeze, gelu, maximum, minimum = tf.exp, tf.squeeze, tf.nn.gelu, tf.maximum, \
            tf.minimum
        sigmoid, relu, rsqrt = tf.sigmoid, tf.nn.relu, tf.math.rsqrt
    a = mean(x, axis=1, keepdims=True)
    c = transpose(x, (0, 2, 1))
    outs = [
        squeeze(a, axis=1),
        reshape(x, (-1, 48)),
        softmax(x, axis=1),
        x[:, 1:5:2, -3:],
        x[:, 2],
        concat([x, 2.0 * x, x - 1.0], axis=-1),
        matmul(x, c),
        clip(x, -0.5, 0.5),
        expand(sqrt(absolute(x) + 0.1), 1),
        reduce_max(exp(-x), axis=-1),
        gelu(x),
        maximum(x, 0.1) - minimum(x, -0.2) / 3.0,
        sigmoid(x) * relu(x) + rsqrt(absolute(x) + 1.0),
    ]
    return keras.Model(x, outs, name="ops")
