# syntax=docker/dockerfile:1
# ConvLens dashboard image: Streamlit and the HTTP client. No torch: the dashboard imports only client/,
# dashboard/ and the torch-free core modules copied below (tests/test_import_boundary.py keeps them torch-free;
# tests/test_deploy_files.py checks that every one the dashboard loads is copied).
#
#   docker build -f deploy/dashboard.Dockerfile -t convlens-dashboard .
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build: the venv
FROM ${BASE_IMAGE} AS build
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 LANG=C.UTF-8
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app
COPY requirements.txt ./
# The dashboard's pins, taken from the one requirements file.
RUN python3 -m venv /opt/venv \
    && grep -i -E '^(streamlit|plotly|requests|pillow)==' requirements.txt > /tmp/requirements-dashboard.txt \
    && test "$(wc -l < /tmp/requirements-dashboard.txt)" -eq 4 \
    && /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements-dashboard.txt \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin convlens
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY convlens/__init__.py convlens/schema.py convlens/outputs.py convlens/decoding.py convlens/colormaps.py ./convlens/
COPY client ./client
COPY dashboard ./dashboard
COPY deploy/healthcheck.py ./deploy/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    CONVLENS_URL=http://api:8080 \
    CONVLENS_KEY_FILE=/var/lib/convlens-key/key_file.json \
    CONVLENS_DASHBOARD_PORT=8501 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_HEADLESS=true
USER 10001:10001
EXPOSE 8501
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "/app/deploy/healthcheck.py", "dashboard"]
# 10 MB uploads, as the API; XSRF protection and CORS stay on (Streamlit's defaults).
ENTRYPOINT ["sh", "-c", "exec streamlit run /app/dashboard/streamlit_app.py --server.address 0.0.0.0 --server.port \"$CONVLENS_DASHBOARD_PORT\" --server.maxUploadSize 10 --server.fileWatcherType none"]
