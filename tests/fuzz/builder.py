"""The compiler in a process of its own, for the fuzzer: `python3 -m fuzz.builder` reads pickled
(model bytes, opt-level, width, output dir) requests on stdin and answers (stage, message) on
stdout, one per request, until stdin closes. See oracle.Builder."""
from __future__ import annotations

import os
import pickle
import sys
import warnings


def main() -> None:
    # the protocol keeps the real stdout; anything printed goes to stderr
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    warnings.simplefilter("ignore")
    from pathlib import Path

    import onnx

    from fuzz.oracle import Config, StageError, _one_line, build

    requests = sys.stdin.buffer
    while True:
        try:
            data, level, width, out = pickle.load(requests)
        except EOFError:
            return
        try:
            build(onnx.load_from_string(data), Config(level, width), Path(out))
            answer = ("ok", "")
        except StageError as e:
            answer = (e.stage, _one_line(str(e)))
        except Exception as e:  # noqa: BLE001 - every failure is a verdict
            answer = ("codegen", _one_line(f"{type(e).__name__}: {e}"))
        try:
            pickle.dump(answer, proto)
            proto.flush()
        except BrokenPipeError:  # the fuzzer is gone
            return


if __name__ == "__main__":
    main()
