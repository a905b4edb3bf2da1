.PHONY: demo test
demo:  ## install neo, compile a small trained model for x86_64 and arm64, run both
	bash scripts/demo.sh
test:  ## install the test dependencies and run the tests
	bash scripts/test.sh
