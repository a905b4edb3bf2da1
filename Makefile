.PHONY: demo test
demo:  ## install neo, compile a small trained model for x86_64 and arm64, run both
	bash scripts/demo.sh
test:  ## install the test dependencies and run the tests
	bash scripts/test.sh
.PHONY: bench
bench:  ## neo against onnxruntime, PyTorch, TensorFlow and LiteRT: six models, a Keras MobileNetV2, int8/fp16 resnet50, an int8 TFLite MobileNetV2; writes docs/BENCHMARKS.md (~20 min; the int8 TFLite compile ~15 min more on the first run)
	python3 scripts/bench.py
	python3 scripts/bench_keras.py
	python3 scripts/bench_quant.py
	python3 scripts/bench_tflite.py
.PHONY: bench-avx2
bench-avx2:  ## scripts/bench.py with AVX-512, AVX-VNNI and AMX hidden from every engine (an AVX-512 host with CPUID faulting as an AVX2 machine); its own section of docs/BENCHMARKS.md (~3 min)
	scripts/hide-avx512 python3 scripts/bench.py
.PHONY: zoo
zoo:  ## compile every torchvision model with the PyTorch frontend; writes docs/ZOO.md (~1 h)
	python3 scripts/zoo.py
.PHONY: fuzz
SECONDS ?= 300
FUZZ_OUT ?= build/fuzz
fuzz:  ## differential graph fuzzing, fresh seeds, for SECONDS (300); failures minimized into FUZZ_OUT (docs/FUZZING.md)
	python3 tests/fuzz run --seconds $(SECONDS) --out $(FUZZ_OUT)
.PHONY: bench-trees
bench-trees:  ## neo vs xgboost and TL2cgen on two tree ensembles; writes its section of docs/BENCHMARKS.md (~5 min)
	python3 scripts/bench_trees.py
