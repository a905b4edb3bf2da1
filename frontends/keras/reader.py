"""Reading Keras model files with h5py, json and zipfile only (no Keras, no TensorFlow).

Three containers, two config dialects:

- Keras 2 `.h5` (Keras 2.0-2.15, tf.keras, tf-keras): root attribute `model_config` (JSON), group
  `model_weights` with one group per layer whose attribute `weight_names` lists its variables in
  the layer's `weights` order (`conv1/kernel:0`, relative to the layer's group);
- Keras 3 `.h5` (`model.save("m.h5")`): the same layout, Keras 3 layer configs, weight names
  without `:0` (`conv1/kernel`);
- Keras 3 `.keras`: a zip of `config.json`, `metadata.json` and `model.weights.h5`, whose groups
  follow the object tree: `layers/<snake_case class name>[_<n>]/vars/<i>` for the model's layers
  in order, sublayers under their attribute names (`layers/lstm/cell/vars/0`,
  `layers/multi_head_attention/query_dense/vars/1`), nested models under `layers/functional/
  layers/...`. Newer files also name each `vars` group's owner in its `name` attribute.

`read_keras(path)` returns a `KerasFile`: the model config, the Keras major version and a
`WeightReader` that, given the path of a layer (its name and the names of the models that hold
it), returns its weights in Keras's `layer.weights` order.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np

from neo.ir.errors import ModelLoadError

SAVE_HINT = ("save the whole model with model.save('model.keras') (Keras 3) or "
             "model.save('model.h5') (Keras 2 or 3)")
# Classes whose config is a whole model: their layers become part of the graph.
MODEL_CLASSES = frozenset({"Functional", "Model", "Sequential"})


def _h5py():
    try:
        import h5py
    except ImportError as e:  # a --no-deps install
        raise ModelLoadError(f"reading Keras models needs the h5py package, which is not "
                             f"installed ({e})", hint="pip install h5py") from None
    return h5py


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _names(attr: Any) -> list[str]:
    """An h5 attribute holding a list of names (bytes or str, maybe an empty float array)."""
    if attr is None:
        return []
    return [_text(n) for n in np.asarray(attr).reshape(-1) if not isinstance(n, float)]


def snake_case(name: str) -> str:
    """How Keras 3 names an object's group in a `.keras` weights file (its class name)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


@dataclass
class KerasFile:
    path: Path
    container: str  # "keras" (Keras 3 zip) or "h5"
    keras_version: str
    config: dict  # {"class_name": ..., "config": {...}}
    weights: WeightReader

    @property
    def major(self) -> int:
        return 3 if self.keras_version.startswith("3") else 2

    @property
    def format(self) -> str:
        return "Keras 3 .keras" if self.container == "keras" else f"Keras {self.major} .h5"


def read_keras(path: str | Path) -> KerasFile:
    """Open a `.keras` or `.h5` Keras model (config parsed, weights read on demand)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"Keras model file {path} does not exist or is not a file")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(b"PK"):
        return _read_zip(path)
    if head == b"\x89HDF\r\n\x1a\n":
        return _read_h5(path)
    raise ModelLoadError(f"{path} is neither a Keras 3 .keras archive nor an HDF5 (.h5) file",
                         hint=SAVE_HINT)


def _json(text: str | bytes, what: str, path: Path) -> dict:
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"{path}: {what} is not valid JSON ({e})") from None
    if not isinstance(value, dict) or "class_name" not in value:
        raise ModelLoadError(f"{path}: {what} is not a Keras model config (no class_name)")
    return value


def _read_zip(path: Path) -> KerasFile:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            if "config.json" not in names:
                raise ModelLoadError(f"{path} is a zip archive without config.json, not a Keras 3 "
                                     ".keras file", hint=SAVE_HINT)
            config = _json(z.read("config.json"), "config.json", path)
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
            if "model.weights.h5" in names:
                pass
            elif "model.weights.json" in names:
                raise ModelLoadError(f"{path} keeps its weights in shards (model.weights.json); "
                                     "Neo reads single-file .keras archives",
                                     hint="save it again without max_shard_size")
            elif "model.weights.npz" in names:
                raise ModelLoadError(f"{path} keeps its weights as .npz; Neo reads the default "
                                     "model.weights.h5", hint=SAVE_HINT)
            else:
                raise ModelLoadError(f"{path} has no model.weights.h5", hint=SAVE_HINT)
    except (zipfile.BadZipFile, OSError, KeyError) as e:
        raise ModelLoadError(f"cannot read {path} as a .keras archive: {e}",
                             hint=SAVE_HINT) from None
    version = str(meta.get("keras_version", "3"))
    return KerasFile(path, "keras", version, config, KerasZipWeights(path))


def _read_h5(path: Path) -> KerasFile:
    h5py = _h5py()
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if "model_config" not in attrs:
                what = ("weights only (model.save_weights)"
                        if "layer_names" in attrs or "model_weights" not in f else "no model config")
                raise ModelLoadError(f"{path} holds {what}: there is no model_config, so there "
                                     "is no graph to compile", hint=SAVE_HINT)
            config = _json(_text(attrs["model_config"]), "the model_config attribute", path)
            version = _text(attrs.get("keras_version", "2"))
            group = f.get("model_weights", f)
            layer_names = _names(group.attrs.get("layer_names"))
    except OSError as e:
        raise ModelLoadError(f"cannot read {path} as HDF5: {e}", hint=SAVE_HINT) from None
    if version.startswith("1"):
        raise ModelLoadError(f"{path} was written by Keras {version}; Neo reads Keras 2 and 3 "
                             "files", hint="load it in Keras 2 and save it again")
    return KerasFile(path, "h5", version, config, KerasH5Weights(path, layer_names))


# -- weights --------------------------------------------------------------------------------------
@dataclass
class LayerRef:
    """Where a layer is: its name, its class, and the models that hold it (the file's model
    first, then the nested ones), each with the classes of its layers (for `.keras` group
    names)."""

    name: str
    class_name: str
    models: tuple[ModelRef, ...] = ()


@dataclass
class ModelRef:
    name: str
    class_name: str
    layers: list[tuple[str, str, bool]] = field(default_factory=list)  # (name, class, is a layer)
    leaves: frozenset[str] = frozenset()  # names of every non-model layer inside, at any depth


class WeightReader:
    """The weights of layers, by `LayerRef`; `open()`/`close()` around a conversion."""

    def open(self) -> None: ...

    def close(self) -> None: ...

    def layer(self, ref: LayerRef, class_name: str) -> list[np.ndarray]:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class KerasH5Weights(WeightReader):
    """`model_weights/<layer>` groups; a nested model's group holds all its layers' weights, told
    apart by the layer names in the weight names (Keras 2 `dense/kernel:0`, Keras 3
    `inner/dense/kernel`)."""

    def __init__(self, path: Path, layer_names: list[str]):
        self.path = path
        self.layer_names = layer_names
        self.f = None
        self._nested: dict[str, dict[str, list[np.ndarray]]] = {}

    def open(self) -> None:
        if self.f is None:
            self.f = _h5py().File(self.path, "r")

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
        self._nested.clear()

    def _group(self):
        return self.f.get("model_weights", self.f)

    def _arrays(self, name: str) -> list[tuple[str, np.ndarray]]:
        root = self._group()
        if name not in root:
            if name in self.layer_names:
                return []
            raise ModelLoadError(f"{self.path}: no weights group for layer {name!r}")
        g = root[name]
        out = []
        for wn in _names(g.attrs.get("weight_names")):
            if wn not in g:
                raise ModelLoadError(f"{self.path}: layer {name!r} lists weight {wn!r}, which the "
                                     "file does not hold")
            out.append((wn, np.asarray(g[wn][()])))
        return out

    def layer(self, ref: LayerRef, class_name: str) -> list[np.ndarray]:
        if len(ref.models) < 2:
            return [a for _, a in self._arrays(ref.name)]
        top = ref.models[1]  # the nested model holding all the layer's weights
        if top.name not in self._nested:
            self._nested[top.name] = self._split_nested(top)
        return self._nested[top.name].get(ref.name, [])

    def _split_nested(self, model: ModelRef) -> dict[str, list[np.ndarray]]:
        """A nested model's weights by leaf layer: the first component of each weight name that
        names a layer of the model (its trainable weights come first, then the others, but each
        layer's keep their order)."""
        by_layer: dict[str, list[np.ndarray]] = {}
        for wn, arr in self._arrays(model.name):
            parts = wn.removesuffix(":0").split("/")
            owner = next((p for p in parts[:-1] if p in model.leaves), None)
            if owner is None:
                raise ModelLoadError(f"{self.path}: weight {wn!r} of the nested model "
                                     f"{model.name!r} names none of its layers")
            by_layer.setdefault(owner, []).append(arr)
        return by_layer


# Sublayer order in `layer.weights` for classes whose `.keras` groups nest their variables.
_CHILD_ORDER = {
    "MultiHeadAttention": ("query_dense", "key_dense", "value_dense", "output_dense"),
    "Bidirectional": ("forward_layer", "backward_layer"),
}


class KerasZipWeights(WeightReader):
    def __init__(self, path: Path):
        self.path = path
        self.f = None
        self._indexes: dict[tuple[str, str], dict[str, str]] = {}

    def open(self) -> None:
        if self.f is None:
            try:
                with zipfile.ZipFile(self.path) as z:
                    data = z.read("model.weights.h5")
                self.f = _h5py().File(io.BytesIO(data), "r")
            except (OSError, zipfile.BadZipFile) as e:
                raise ModelLoadError(f"{self.path}: model.weights.h5 is not readable HDF5: "
                                     f"{e}") from None

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
        self._indexes.clear()

    def _index(self, group, model: ModelRef) -> dict[str, str]:
        """Layer name -> its group's key under `group`/layers: the name each `vars` group records
        (newer files), else the snake_case class name numbered in layer order."""
        key = (group.name, model.name)
        if key in self._indexes:
            return self._indexes[key]
        index: dict[str, str] = {}
        counts: dict[str, int] = {}
        for lname, cls, is_layer in model.layers:
            if not is_layer:  # keras.ops operations are not saved
                continue
            base = snake_case(cls)
            n = counts.get(base, 0)
            counts[base] = n + 1
            index[lname] = base if n == 0 else f"{base}_{n}"
        layers_group = group.get("layers")
        if layers_group is not None:
            for k, child in layers_group.items():
                vars_group = child.get("vars")
                if vars_group is not None and "name" in vars_group.attrs:
                    index[_text(vars_group.attrs["name"])] = k
        self._indexes[key] = index
        return index

    def _child(self, group, model: ModelRef, name: str, path: str):
        """The group of layer `name` of `model`, whose own group is `group`."""
        key = self._index(group, model).get(name)
        if key is None or "layers" not in group or key not in group["layers"]:
            raise ModelLoadError(f"{self.path}: no weights group for layer {name!r} "
                                 f"(expected {path}layers/{key})")
        return group["layers"][key]

    def layer(self, ref: LayerRef, class_name: str) -> list[np.ndarray]:
        group, path = self.f, ""
        for parent, model in zip(ref.models, ref.models[1:]):
            group = self._child(group, parent, model.name, path)
            path = f"{group.name.lstrip('/')}/"
        group = self._child(group, ref.models[-1], ref.name, path)
        return self._collect(group, class_name)

    def _collect(self, group, class_name: str) -> list[np.ndarray]:
        """A layer's own variables, then its sublayers' (in `layer.weights` order)."""
        out = []
        if "vars" in group:
            v = group["vars"]
            out += [np.asarray(v[str(i)][()]) for i in range(len(v))]
        children = [k for k in group if k != "vars"]
        order = _CHILD_ORDER.get(class_name)
        if order:
            children = [c for c in order if c in group] + [c for c in children if c not in order]
        for c in children:
            out += self._collect(group[c], "")
        return out
