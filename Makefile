# ConvLens — every target installs what it needs into .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install test test-kernels run stop weights bench lint builtin demo clean compose-test soak bench-serving \
	compose-test-ray bench-corpus-1m

help:
	@echo "make run      start the API (TorchServe behind the nginx gate) and the dashboard on the built-in model"
	@echo "make stop     stop both"
	@echo "make test     install what is missing and run the whole test suite"
	@echo "make test-kernels  the numerical tests again as on CPUs of the other capabilities (AVX2, no AVX)"
	@echo "make weights  fetch ImageNet weights into the torch cache (needs internet)"
	@echo "make bench    benchmarks against Captum / pytorch-grad-cam -> docs/benchmarks.md"
	@echo "make builtin  retrain the built-in model (about 10 min on 2 CPU cores)"
	@echo "make lint     ruff + mypy"
	@echo "make compose-test  build both images, start the compose stack, smoke-test API and dashboard, tear down"
	@echo "make compose-test-ray  the api with a Ray head + worker (compose profile ray): codes on the cluster"
	@echo "make bench-corpus-1m  the corpus end to end at 100,000 and 1,000,000 images (about 2 hours on 2 cores; ~17 GB under /tmp)"
	@echo "make soak     the long reliability runs (8 clients x 60 s, killed worker) -> docs/reliability.md"

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	@# torch and torchvision (with the CUDA libraries of their x86_64 build, several GB) on their own first and with
	@# no pip cache: the peak disk use is then one install's, not the cache's copy of every wheel as well.
	$(PY) -m pip install --quiet --no-cache-dir $$(grep -E '^torch(vision)?==' requirements.txt)
	$(PY) -m pip install --quiet --no-cache-dir -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-cache-dir --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

CHROMIUM := /usr/bin/chromium
NGINX := /usr/sbin/nginx
PODMAN := /usr/bin/podman
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The browser test drives Debian's Chromium (a test tool's own browser download is not possible everywhere).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver

# The gate in front of TorchServe (serve/gate.py) is nginx; the reliability tests run through it.
$(NGINX):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx-light

# podman-compose (the deployment-file tests' `config` check) asks the podman binary for its version.
$(PODMAN):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq podman

test: $(STAMP) $(CHROMIUM) $(NGINX) $(PODMAN)
	$(PY) -m pytest -q

# The numerical tests again under every CPU profile this machine has besides its own (tests/kernels.py caps
# ATen, oneDNN and MKL together): a tolerance that holds only for this CPU's kernels fails here too.
test-kernels: $(STAMP)
	$(PY) -m tests.kernels --others -- -q -p no:cacheprovider tests/core tests/handlers

# Builds both images with podman (installed if missing) or docker, runs the stack, tests it, tears it down.
compose-test: $(STAMP)
	deploy/compose_test.sh

# The api with the compose profile "ray" (a Ray head and a worker): a dataset's CNN codes computed on the cluster.
compose-test-ray: $(STAMP)
	deploy/compose_test_ray.sh

soak: $(STAMP) $(NGINX)
	CONVLENS_SOAK=1 $(PY) -m pytest -q -m soak tests/reliability -s

# TorchServe (builds stale archives, waits for /ping) on a private port behind the gate (nginx, serve/gate.py: the
# timeouts and JSON errors of every deployment) on 8080, and the dashboard, all on 127.0.0.1.
run: $(STAMP) $(NGINX)
	@command -v java >/dev/null || { echo "error: TorchServe needs Java 17+: apt-get install openjdk-17-jre-headless"; exit 1; }
	$(VENV)/bin/convlens serve start
	$(PY) -m dashboard.launch start --api-url http://127.0.0.1:$${CONVLENS_INFERENCE_PORT:-8080} \
		--key-file serve/run/key_file.json
	@echo ""
	@echo "ConvLens is running on the built-in model:"
	@echo "  dashboard      http://127.0.0.1:$${CONVLENS_DASHBOARD_PORT:-8501}"
	@echo "  inference API  http://127.0.0.1:$${CONVLENS_INFERENCE_PORT:-8080}  (token: serve/run/key_file.json)"
	@echo "  try:           .venv/bin/convlens call saliency dashboard/samples/ring.png --param method=gradcam"
	@echo "stop both with:  make stop"

stop:
	-$(PY) -m dashboard.launch stop
	-$(VENV)/bin/convlens serve stop

demo: $(STAMP)
	$(VENV)/bin/convlens demo --out out/demo

weights: $(STAMP)
	$(VENV)/bin/convlens weights fetch

bench: $(STAMP)
	$(PY) bench/attribution.py --out docs/benchmarks.md
	$(PY) bench/serving.py --out docs/benchmarks.md
	$(PY) bench/occlusion.py --out docs/benchmarks.md
	$(PY) bench/corpus.py --out docs/benchmarks.md

# Not part of `make bench`: hours on 2 cores. Data under $CONVLENS_BENCH_DIR (default /tmp/convlens-scale).
bench-corpus-1m: $(STAMP)
	$(PY) bench/corpus_scale.py --n 100000 --n 1000000 --ray-cpus 2 --out docs/benchmarks.md

builtin: $(STAMP)
	$(VENV)/bin/convlens builtin train

lint: $(STAMP)
	$(VENV)/bin/ruff check convlens tests bench
	$(VENV)/bin/mypy convlens

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache out
