# syntax=docker/dockerfile:1
# One image for every HelloQuitteX service: `python -m services.<name>` picks the service.
# Built from uv.lock only (no resolution at build time), runtime stage without uv or a compiler,
# running as an unprivileged user on a read-only root filesystem (see deploy/k8s).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
 && apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first (cached while only the code changes).
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY hqx ./hqx
COPY services ./services
RUN uv sync --frozen --no-dev --no-editable
# Ingest's C fast path (services/ingest/ytdscan.c), built into the installed package.
RUN cd / && /app/.venv/bin/python -m services.ingest.fastpath

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 hqx \
 && useradd --system --uid 10001 --gid hqx --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin hqx
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HQX_HEALTH_PORT=9090
WORKDIR /app
USER 10001:10001
# 8000: the gateway's HTTP; 9090: /healthz, /readyz, /metrics of every service.
EXPOSE 8000 9090
ENTRYPOINT ["python", "-m"]
CMD ["services.gateway"]
