"""Differential fuzzing of the compiler with random valid graphs (NNSmith-style).

- `graphgen`: random valid ONNX graphs of 2-30 nodes from a seed, as a `GraphSpec` (ops with
  shape-relative parameters) that `realize` turns into an ONNX model and its input data.
- `oracle`: the references (onnxruntime, the IR's numpy interpreter in float32 and float64, the
  ONNX reference evaluator as a tie-breaker) and neo compiled per (opt-level, vector width), run in
  the runtime's checked mode in a subprocess; the comparison and its verdict.
- `minimize`: delta debugging of a failing spec (outputs, nodes, shapes, parameters).
- `__main__`: `python3 tests/fuzz run|one|replay|minimize` (`make fuzz`).

docs/FUZZING.md says how to run it and what it found.
"""
