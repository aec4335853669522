# ConvLens image: the core, the built-in model and the CLI. Serving and dashboard services are added
# to docker-compose.yml by the deployment work; this image is their common base.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update && apt-get install -y --no-install-recommends make openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt pyproject.toml README.md ./
RUN pip install -r requirements.txt
COPY convlens ./convlens
RUN pip install --no-deps -e .
USER 1000:1000
CMD ["convlens", "demo", "--out", "/tmp/demo"]
