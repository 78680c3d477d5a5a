# One image for web, worker and gpu-worker. The GPU worker brings CUDA through the host's
# NVIDIA runtime; pass TORCH_SPEC to install a CUDA build of torch for that image.
FROM python:3.11-slim-bookworm

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cpu"
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap nodejs g++ libpq5 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY config ./config
COPY core ./core
COPY annotation ./annotation
COPY scoring ./scoring
COPY reviewers ./reviewers
RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" "$TORCH_SPEC" \
 && pip install --no-cache-dir -c constraints.txt .
COPY manage.py ./
COPY templates ./templates
COPY static ./static
RUN SECRET_KEY=collectstatic-only-not-a-secret-0123456789-abcdefghijklmnopqrstuvwxyz python manage.py collectstatic --noinput

RUN useradd --system --uid 10001 --home /app arbiter && mkdir -p /app/var && chown arbiter /app/var
USER arbiter
EXPOSE 8000
# Granian (HTTP in Rust, the app on Python threads): a worker per core, and threads enough that
# a slow request (asking a model waits up to ARBITER_LLM_TIMEOUT_S) holds one thread, not a
# worker. Nothing kills a request midway. Override with GRANIAN_WORKERS etc. in the environment.
ENV GRANIAN_WORKERS=2 GRANIAN_BLOCKING_THREADS=4
CMD ["granian", "--interface", "wsgi", "config.wsgi:application", "--host", "0.0.0.0", "--port", "8000", "--access-log", "--respawn-failed-workers"]
