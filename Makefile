# Two commands do all set-up: `make demo` and `make test`. Each creates or updates .venv by itself.
PYTHON ?= python3
VENV ?= .venv
# The CPU build by default: on this project's machines `torch==2.13.0` resolves to a local CPU wheel, while an
# unpinned torch pulls the multi-GB CUDA build. Override, e.g. `make TORCH_SPEC="torch==2.13.0+cu128" test`.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell printf '%s' '$(TORCH_SPEC)' | cksum | cut -d' ' -f1)

.PHONY: venv test demo lint bench clean cpp

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

# The C++ library and its sample (cpp/): header-only dependencies fetched from Debian and PyPI into build/cpp-deps,
# onnxruntime itself is the .venv's wheel, loaded at run time.
CPP_BUILD ?= build/cpp
CPP_DEPS ?= build/cpp-deps
cpp: venv
	@PYTHON=$(BIN)/python bash cpp/scripts/fetch_deps.sh $(CPP_DEPS)
	@cmake -S cpp -B $(CPP_BUILD) -DRTRESNET_DEPS_DIR=$(CURDIR)/$(CPP_DEPS) -DPython_EXECUTABLE=$(CURDIR)/$(BIN)/python \
		-DCMAKE_BUILD_TYPE=Release > $(CPP_BUILD).configure.log || { cat $(CPP_BUILD).configure.log; exit 1; }
	@grep -E "ONNX Runtime|TensorRT backend" $(CPP_BUILD).configure.log
	@MAKEFLAGS= cmake --build $(CPP_BUILD) --parallel

test: venv cpp
	@$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests; refusing to pass" >&2; fi; exit $$rc

demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" bash benchmarks/demo.sh

bench: venv
	$(BIN)/python benchmarks/resnet50_cpu.py --fp16 --wait-idle-s 900

lint: venv
	$(BIN)/ruff check rtresnet tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build/cpp build/cpp-deps
