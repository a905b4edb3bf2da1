"""The seven model frameworks Neo accepts, and what each one expects from the user.

Each framework declares, in one place, how its model files are named, which form of input-shape
JSON it takes (Neo's `DataInputConfig`), in which layout those shapes are written, and an example.
The shape parser, the model-file resolver and the error messages all read this table instead of
keeping their own lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from neo.errors import UsageError

ShapeForm = Literal["dict", "dict-or-list", "optional-dict", "none"]
Layout = Literal["NCHW", "NHWC"]


@dataclass(frozen=True)
class Framework:
    name: str  # lower-case, as typed on the command line
    display_name: str
    # Glob patterns (matched case-insensitively against file names) that identify a model file.
    model_patterns: tuple[str, ...]
    # Files that must sit beside the model file (MXNet weights, a SavedModel's variables/).
    companion_patterns: tuple[str, ...]
    model_description: str  # what the model looks like on disk, for messages
    shape_form: ShapeForm
    # Layout in which the user writes --shape; None when shapes are not images or not needed.
    layout: Layout | None
    # Layout of the model itself. It differs from `layout` only for Keras: Neo takes Keras shapes as
    # NCHW although Keras models are NHWC.
    model_layout: Layout | None
    shape_example: str  # a valid --shape value, "" when none is needed
    shapes_in_order: bool  # Neo says the dict must list the inputs in the model's order

    @property
    def patterns_text(self) -> str:
        """The model-file patterns for messages, e.g. `*-symbol.json + *-NNNN.params`."""
        text = ", ".join(self.model_patterns)
        if self.companion_patterns:
            text += " (+ " + ", ".join(self.companion_patterns) + ")"
        return text.replace("[0-9][0-9][0-9][0-9]", "NNNN")

    @property
    def shape_expectation(self) -> str:
        """What --shape must be for this framework, phrased for an error message."""
        if self.shape_form == "none":
            return f"absent ({self.display_name} needs no input shapes)"
        if self.shape_form == "optional-dict":
            # XGBoost: the features come from the model; a shape only sets the compiled batch
            return ("absent (batch 1, features from the model) or a JSON object mapping the "
                    "input name to [batch, features] with the model's number of features")
        order = " in input order" if self.shapes_in_order else ""
        if self.shape_form == "dict-or-list":
            return (
                f"a JSON object mapping input0, input1, ... to {self.layout} shapes, or a JSON "
                f"list of {self.layout} shapes{order}"
            )
        text = f"a JSON object mapping input names to {self.layout} shapes{order}"
        if self.layout != self.model_layout:
            text += (
                f" ({self.layout} even though {self.display_name} models are {self.model_layout})"
            )
        return text


_FRAMEWORKS: tuple[Framework, ...] = (
    Framework(
        name="tensorflow",
        display_name="TensorFlow",
        model_patterns=("saved_model.pb", "saved_model.pbtxt", "*.pb", "*.pbtxt"),
        companion_patterns=("variables/",),
        model_description="a SavedModel directory (saved_model.pb + variables/) or one frozen .pb",
        shape_form="dict",
        layout="NHWC",
        model_layout="NHWC",
        shape_example='{"input":[1,224,224,3]}',
        shapes_in_order=False,
    ),
    Framework(
        name="keras",
        display_name="Keras",
        model_patterns=("*.h5", "*.keras"),
        companion_patterns=(),
        model_description="one .h5 or .keras file",
        shape_form="dict",
        layout="NCHW",
        model_layout="NHWC",
        shape_example='{"input_1":[1,3,224,224]}',
        shapes_in_order=False,
    ),
    Framework(
        name="mxnet",
        display_name="MXNet",
        model_patterns=("*-symbol.json",),
        companion_patterns=("*-[0-9][0-9][0-9][0-9].params",),
        model_description="NAME-symbol.json with its NAME-0000.params beside it",
        shape_form="dict",
        layout="NCHW",
        model_layout="NCHW",
        shape_example='{"data":[1,3,224,224]}',
        shapes_in_order=True,
    ),
    Framework(
        name="onnx",
        display_name="ONNX",
        model_patterns=("*.onnx",),
        companion_patterns=(),
        model_description="one .onnx file",
        shape_form="dict",
        layout="NCHW",
        model_layout="NCHW",
        shape_example='{"input":[1,3,224,224]}',
        shapes_in_order=True,
    ),
    Framework(
        name="pytorch",
        display_name="PyTorch",
        model_patterns=("*.pt", "*.pth", "*.pt2"),
        companion_patterns=(),
        model_description="one TorchScript .pt/.pth (torch.jit.trace(...).save) or .pt2 file",
        shape_form="dict-or-list",
        layout="NCHW",
        model_layout="NCHW",
        shape_example='{"input0":[1,3,224,224]}',
        shapes_in_order=True,
    ),
    Framework(
        name="xgboost",
        display_name="XGBoost",
        model_patterns=("*.json", "*.ubj", "*.model", "*.bst"),
        companion_patterns=(),
        model_description="one saved booster (.json, .ubj, .model or .bst)",
        shape_form="optional-dict",
        layout=None,
        model_layout=None,
        shape_example='{"data":[1,30]}',
        shapes_in_order=False,
    ),
    Framework(
        name="tflite",
        display_name="TFLite",
        model_patterns=("*.tflite",),
        companion_patterns=(),
        model_description="one .tflite file",
        shape_form="dict",
        layout="NHWC",
        model_layout="NHWC",
        shape_example='{"input":[1,224,224,3]}',
        shapes_in_order=True,
    ),
)

FRAMEWORKS: dict[str, Framework] = {fw.name: fw for fw in _FRAMEWORKS}


def all_frameworks() -> list[Framework]:
    return list(_FRAMEWORKS)


def parse_framework(text: str | Framework) -> Framework:
    """The framework named `text`, in any letter case; only the seven exact names are accepted."""
    if isinstance(text, Framework):
        return text
    key = (text or "").strip().lower()
    if key in FRAMEWORKS:
        return FRAMEWORKS[key]
    valid = ", ".join(FRAMEWORKS)
    shown = repr(text) if text else "nothing"
    raise UsageError(f"unknown framework {shown}; valid frameworks: {valid}")
