# syntax=docker/dockerfile:1
# ConvLens API image: TorchServe (Java 17) behind the nginx gate, the handlers and the model archives,
# built at image build time. torch from PyPI carries CUDA: the same image runs on a GPU host with the
# NVIDIA container toolkit (compose.gpu.yml) and on CPU-only hosts.
#
#   docker build -f deploy/api.Dockerfile -t convlens-api .
#   (here: podman build --build-arg BASE_IMAGE=localhost/bookworm-python:3.11 ...; see deploy/compose_test.sh)
#
# BASE_IMAGE must be Debian bookworm with python3 (3.11) and `python3 -m venv`: python:3.11-slim or a local one.
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build: the venv and the archives
FROM ${BASE_IMAGE} AS build
# Optional: where pip finds wheels besides PyPI (a local mirror bind-mounted into the build).
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app
COPY requirements.txt ./
# The product's pinned runtime, less what only the dashboard uses (that image has it).
RUN python3 -m venv /opt/venv \
    && grep -v -i -E '^(streamlit|plotly)==' requirements.txt > /tmp/requirements-api.txt \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements-api.txt \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} + \
    && rm -rf /opt/venv/lib/python3.11/site-packages/torch/include
COPY pyproject.toml README.md ./
COPY convlens ./convlens
COPY handlers ./handlers
COPY serve ./serve
COPY client ./client
COPY deploy/api/entrypoint.py deploy/healthcheck.py ./deploy/
# One archive per endpoint the registry declares (serve/archives.py: nothing here lists endpoints).
RUN /opt/venv/bin/python -m serve.archives --out /app/model-store \
    && /opt/venv/bin/python -c "from serve.archives import all_endpoints; print(' '.join(all_endpoints()))" \
       > /app/model-store/ENDPOINTS \
    && find /app -name '__pycache__' -prune -exec rm -rf {} +

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Java 17 for TorchServe's frontend, nginx for the gate (timeouts, JSON 413). No compilers, no docs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless nginx-light \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/convlens --shell /usr/sbin/nologin convlens \
    && mkdir -p /var/lib/convlens/model-store /var/lib/convlens-key /var/lib/convlens-weights /var/lib/convlens-data \
       /var/lib/convlens-models /var/lib/convlens-ray \
    && chown -R convlens:convlens /var/lib/convlens /var/lib/convlens-key /var/lib/convlens-weights \
       /var/lib/convlens-data /var/lib/convlens-models /var/lib/convlens-ray
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
COPY --from=build --chown=convlens:convlens /app/model-store /var/lib/convlens/model-store
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    CONVLENS_RUN_DIR=/var/lib/convlens \
    CONVLENS_KEY_DIR=/var/lib/convlens-key \
    TORCH_HOME=/var/lib/convlens-weights \
    CONVLENS_DATA_DIR=/var/lib/convlens-data \
    CONVLENS_MODELS_DIR=/var/lib/convlens-models \
    CONVLENS_PORT=8080 \
    CONVLENS_WORKERS=1
WORKDIR /var/lib/convlens
USER 10001:10001
EXPOSE 8080
VOLUME ["/var/lib/convlens/model-store", "/var/lib/convlens-key", "/var/lib/convlens-weights", "/var/lib/convlens-data", \
        "/var/lib/convlens-models"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python3", "/app/deploy/healthcheck.py", "api"]
ENTRYPOINT ["python3", "/app/deploy/entrypoint.py"]
