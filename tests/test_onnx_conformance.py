"""The ONNX node conformance suite (onnx/backend/test/data/node) compiled and run by NeoBackend.

Every case is compiled for this machine through the real path (frontend, passes, codegen, link,
runtime) and compared with the suite's expected outputs. Cases for features Neo does not support
yet are excluded in EXCLUDED, one entry per feature with its reason; everything else must pass.
At the end of the module the counts (per op type) go to build/conformance_counts.json.
"""
from __future__ import annotations

import functools
import json
import os
import re
import unittest
from collections import Counter, defaultdict
from pathlib import Path

import onnx
import onnx.backend.test
import pytest
from onnx.backend.test.loader import load_model_tests

from neo.onnx_backend import NeoBackend, NeoBackendRep

NODE_DATA = Path(os.path.dirname(onnx.__file__)) / "backend" / "test" / "data" / "node"
COUNTS_FILE = Path(__file__).resolve().parents[1] / "build" / "conformance_counts.json"

# Patterns are searched in the case name (test_<case>, without the _cpu suffix); the first entry
# that matches gives the reason. `op` names an ONNX op the frontend does not convert: when the
# frontend learns it, test_exclusions_are_current fails so the entry gets removed. Expanded
# variants (`*_expanded`, the op's function body) are excluded separately: they often use only
# supported ops and pass.
NOT_EXPANDED = r"(?!.*_expanded)"
EXCLUDED: list[tuple[str, str | None, str]] = [
    # -- operators the ONNX frontend does not convert ----------------------------------------
    (r"^test_affine_grid_(2d|3d)(_align_corners)?$", "AffineGrid",
     "operator not converted by the frontend"),
    (r"^test_bernoulli(_double|_seed)?$", "Bernoulli", "operator not converted by the frontend"),
    (r"^test_bernoulli.*_expanded$", "RandomUniformLike",
     "operator (in the expanded Bernoulli) not converted by the frontend"),
    (r"^test_bitcast_", "BitCast", "operator not converted by the frontend"),
    (rf"^test_causal_conv_with_state_{NOT_EXPANDED}", "CausalConvWithState",
     "operator not converted by the frontend"),
    (r"^test_col2im", "Col2Im", "operator not converted by the frontend"),
    (r"^test_(basic_)?deform_conv_", "DeformConv", "operator not converted by the frontend"),
    (r"^test_det_", "Det", "operator not converted by the frontend"),
    (r"^test_dft(_|$)", "DFT", "operator not converted by the frontend"),
    (r"^test_einsum_", "Einsum", "operator not converted by the frontend"),
    (r"^test_gridsample", "GridSample", "operator not converted by the frontend"),
    (r"^test_if_(seq|opt)$", None, "If with sequence or optional outputs (not in the IR)"),
    (r"^test_image_decoder_", "ImageDecoder", "operator not converted by the frontend"),
    (rf"^test_linear_attention_{NOT_EXPANDED}", "LinearAttention",
     "operator not converted by the frontend"),
    (r"^test_(loop\d+(_|$)|range_.*_expanded$)", "Loop",
     "control flow (also in the expanded Range) is not converted by the frontend"),
    (r"^test_maxunpool_", "MaxUnpool", "operator not converted by the frontend"),
    (r"^test_melweightmatrix", "MelWeightMatrix", "operator not converted by the frontend"),
    (r"^test_nonmaxsuppression_", "NonMaxSuppression", "operator not converted by the frontend"),
    (r"^test_nonzero_", "NonZero", "operator not converted by the frontend"),
    (r"^test_optional_get_element", "OptionalGetElement",
     "optional types are not converted by the frontend"),
    (r"^test_optional_has_element", "OptionalHasElement",
     "optional types are not converted by the frontend"),
    (r"^test_regex_full_match_", "RegexFullMatch", "string operator not converted"),
    (r"^test_roialign_", "RoiAlign", "operator not converted by the frontend"),
    (rf"^test_rotary_embedding{NOT_EXPANDED}", "RotaryEmbedding",
     "operator not converted by the frontend"),
    (r"^test_(scan|linear_attention_.*_expanded$)", "Scan",
     "control flow (also in the expanded LinearAttention) is not converted by the frontend"),
    (r"^test_sequence_insert_", "SequenceInsert", "sequence types are not converted"),
    (rf"^test_sequence_map_{NOT_EXPANDED}", "SequenceMap", "sequence types are not converted"),
    (r"^test_sequence_map_.*_expanded$", "SequenceLength", "sequence types are not converted"),
    (r"^test_split_to_sequence_", "SplitToSequence", "sequence types are not converted"),
    (r"^test_stft", "STFT", "operator not converted by the frontend"),
    (r"^test_string_concat", "StringConcat", "string operator not converted"),
    (r"^test_string_split_", "StringSplit", "string operator not converted"),
    (r"^test_strnormalizer_", "StringNormalizer", "string operator not converted"),
    (r"^test_tensorscatter", "TensorScatter", "operator not converted by the frontend"),
    (r"^test_tfidfvectorizer_", "TfIdfVectorizer", "operator not converted by the frontend"),
    (r"^test_unique_", "Unique", "operator not converted by the frontend"),
    (r"^test_ai_onnx_ml_", None, "ai.onnx.ml operators (trees, encoders) are not converted"),
    (rf"^test_flexattention{NOT_EXPANDED}", None,
     "ai.onnx.preview FlexAttention is not converted"),
    (r"^test_(adagrad|adam|momentum|nesterov_momentum)(_|$)", None,
     "ai.onnx.preview.training operators: Neo compiles inference only"),
    # -- dtypes the IR does not have ----------------------------------------------------------
    (r"^test_(cast|castlike)_.*(FLOAT8|FLOAT4|INT4|UINT4|INT2|UINT2)", None,
     "float8/float4/int4/int2 dtypes are not in the IR"),
    (r"^test_(de)?quantizelinear_(e4m3fn|e5m2|float4e2m1|int4|uint4|int2|uint2)", None,
     "float8/float4/int4/int2 quantization types are not in the IR"),
    (r"^test_equal_string", None, "string tensors are not in the IR"),
    (r"^test_identity_(opt|sequence)$", None, "optional and sequence types are not in the IR"),
    # -- attributes, outputs and opsets not implemented ----------------------------------------
    (r"^test_batchnorm_.*_training_mode$", None,
     "BatchNormalization training_mode=1: Neo compiles inference only"),
    (r"^test_(de)?quantizelinear_blocked", None, "(De)QuantizeLinear block_size > 0"),
    (r"^test_maxpool_with_argmax_", None, "MaxPool: the Indices output is not implemented"),
    (r"^test_resize_.*_antialias$", None, "Resize antialias=1"),
    (r"^test_training_dropout", None,
     "Dropout: training_mode=1 (random masks); Neo compiles inference only"),
    (r"^test_not_", None, "opset 1 models; Neo converts opset 7 and newer"),
]
_EXCLUDED_RX = [(re.compile(p), op, why) for p, op, why in EXCLUDED]


def exclusion(case: str) -> tuple[str, str | None, str] | None:
    """The first EXCLUDED entry matching the case."""
    for rx, op, why in _EXCLUDED_RX:
        if rx.search(case):
            return rx.pattern, op, why
    return None


def exclusion_reason(case: str) -> str | None:
    found = exclusion(case)
    if found is None:
        return None
    _, op, why = found
    return f"{op}: {why}" if op else why


NODE_CASES = sorted(t.name for t in load_model_tests(kind="node"))

backend_test = onnx.backend.test.BackendTest(NeoBackend, __name__)
# Only the node suite: the model zoo, "real", "simple" and PyTorch suites are not run here.
backend_test.include(r"^test_.*_cpu$")

# -- outcome recording, for build/conformance_counts.json -----------------------------------------
from conftest import OUTCOMES_DIR

_OUTCOMES: dict[str, str] = {}


def _recorded(case: str, fn):
    @functools.wraps(fn)
    def run(self, *args, **kwargs):
        before = NeoBackendRep.specialized_compiles
        try:
            fn(self, *args, **kwargs)
        except unittest.SkipTest:
            _OUTCOMES[case] = "skipped"
            raise
        except BaseException:
            _OUTCOMES[case] = "failed"
            raise
        # passed as `neo compile` compiles it, or only once inputs were folded to their values
        _OUTCOMES[case] = ("passed_specialized" if NeoBackendRep.specialized_compiles > before
                           else "passed")

    return run


def _node_test_cases() -> dict[str, type[unittest.TestCase]]:
    """BackendTest's node-suite class: CPU tests only, exclusions skipped with their reason, the
    others wrapped to record their outcome."""
    cls = backend_test.test_cases["OnnxBackendNodeModelTest"]
    for name in [n for n in vars(cls) if n.startswith("test_")]:
        if not name.endswith("_cpu"):
            delattr(cls, name)  # the CUDA variants: Neo's backend is CPU only
            continue
        case = name[: -len("_cpu")]
        fn = getattr(cls, name)
        found = exclusion(case)
        if found is None:
            setattr(cls, name, _recorded(case, fn))
        elif found[1] is not None:
            # test_exclusions_are_current re-validates these: the op gets a converter, the
            # entry must go
            setattr(cls, name, unittest.skip(f"excluded: {exclusion_reason(case)}")(fn))
        else:
            # no op to watch: run the case and expect it to fail (it fails early, in the
            # frontend); once it passes, the unexpected success fails the run and the entry
            # must go
            setattr(cls, name, unittest.expectedFailure(fn))
    return {"OnnxBackendNodeModelTest": cls}


globals().update(_node_test_cases())


def _op_type(case: str) -> str:
    """The op a case is about: its single node's type, the op of the unexpanded case for the
    expanded (function body) variants, else the case name."""
    base = re.sub(r"_expanded(_ver\d+)?$", "", case)
    for name in (base, case):
        path = NODE_DATA / name / "model.onnx"
        if path.is_file():
            nodes = [n for n in onnx.load(str(path), load_external_data=False).graph.node
                     if n.op_type != "Constant"]
            if nodes:
                return nodes[0].op_type if name == base else Counter(
                    n.op_type for n in nodes).most_common(1)[0][0]
    return case


def write_counts(outcomes: dict[str, str], path: Path = COUNTS_FILE) -> dict:
    """Pass/fail/excluded counts in total, per op type and per exclusion reason; `passed` cases
    compiled as `neo compile` compiles them, `passed_specialized` ones only with some inputs
    folded to the values given (input specialization, `neo compile --const-input`)."""
    per_op: dict[str, Counter] = defaultdict(Counter)
    reasons: Counter = Counter()
    totals: Counter = Counter()
    for case in NODE_CASES:
        reason = exclusion_reason(case)
        if reason is not None:
            status = "excluded"
            reasons[reason] += 1
        else:
            status = outcomes.get(case, "not_run")
        totals[status] += 1
        per_op[_op_type(case)][status] += 1
    report = {
        "suite": "onnx node conformance",
        "onnx_version": onnx.__version__,
        "cases": len(NODE_CASES),
        "totals": dict(totals),
        "excluded_by_reason": dict(reasons.most_common()),
        "per_op_type": {op: dict(c) for op, c in sorted(per_op.items())},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)
    return report


def summary_line(report: dict) -> str:
    t = report["totals"]
    plain, special = t.get("passed", 0), t.get("passed_specialized", 0)
    return (f"ONNX node conformance: {plain + special} passed ({plain} as plain neo compile, "
            f"{special} only with input specialization), {t.get('failed', 0)} failed, "
            f"{t.get('excluded', 0)} excluded, {t.get('not_run', 0)} not run "
            f"-> {COUNTS_FILE.relative_to(COUNTS_FILE.parents[1])}")


@pytest.fixture(scope="module", autouse=True)
def conformance_counts():
    """This process's outcomes go to build/conformance/; tests/conftest.py merges the files of
    all processes (pytest-xdist workers) at the end of the run and prints the counts."""
    yield
    if not _OUTCOMES:
        return  # only the helper tests ran
    OUTCOMES_DIR.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (OUTCOMES_DIR / f"outcomes-{worker}.json").write_text(json.dumps(_OUTCOMES))


def test_exclusions_are_current():
    """An excluded op the frontend now converts: delete its entry and let its cases run."""
    from neo.frontends.onnx import supported_ops

    now_supported = sorted(op for _, op, _ in EXCLUDED if op and op in supported_ops())
    assert not now_supported, f"remove these from EXCLUDED, the frontend converts them: " \
                              f"{now_supported}"


def test_exclusion_patterns_match_cases():
    """Every exclusion entry is the first match of some case of the installed onnx's node
    suite (an entry that only matches cases an earlier one took is dead)."""
    first = {exclusion(c)[0] for c in NODE_CASES if exclusion(c) is not None}
    unused = [p for p, _, _ in EXCLUDED if p not in first]
    assert not unused, f"exclusion patterns that are the first match of no case: {unused}"
