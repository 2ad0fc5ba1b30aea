# The hosted demo as a container (Hugging Face Spaces, Docker SDK; any Docker host):
#   docker build -t contrastive-explorer . && docker run -p 7860:7860 contrastive-explorer
# Two Streamlit replicas (one per vCPU of a free Space) behind nginx with session affinity,
# started and watched by `python -m deploy.local` (docs/hosting.md). CPU-only PyTorch, demo mode
# on (ui/demo.py): capped trainings, bounded runs folder, no paths shown.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    CL_DEMO=1 \
    CL_REPLICAS=2 \
    CL_RUNS_DIR=/tmp/contrastive-explorer/runs \
    CL_DATA_DIR=/tmp/contrastive-explorer/data \
    CL_CACHE_DIR=/tmp/contrastive-explorer/cache \
    NUMBA_CACHE_DIR=/tmp/contrastive-explorer/numba \
    MPLCONFIGDIR=/tmp/contrastive-explorer/mpl \
    HOME=/tmp/contrastive-explorer/home \
    STREAMLIT_SERVER_MAX_UPLOAD_SIZE=50

# nginx from Debian: the reverse proxy in front of the replicas (runs unprivileged, see deploy/);
# redis-server: the live room's shared store, started and supervised by deploy.local beside them
RUN apt-get update && apt-get install -y --no-install-recommends nginx redis-server \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements-hosted.txt ./
RUN pip install -r requirements-hosted.txt

COPY . .
# The frontend's files compressed once, at build time (nginx sends the .gz copies), and the map-trust
# kernel compiled once (numba keeps it in cl/__pycache__, which user 1000 must be able to read).
RUN mkdir -p /tmp/contrastive-explorer/cache \
    && python -c "from deploy.local import compressed_static; print(compressed_static())" \
    && python -c "from cl.maptrust import warm_up; warm_up()" && chmod -R a+rwX cl/__pycache__ \
    && chmod -R a+rwX /tmp/contrastive-explorer \
    && mkdir -p static/thumbs && chmod -R a+rwX static/thumbs
# (static/thumbs: the scatter thumbnails served by URL, written by the app at run time)
# STREAMLIT_SERVER_MAX_UPLOAD_SIZE: demo mode's largest uploader (an image set, 50 MB); each
# uploader states its own smaller limit (ui.common.upload_limit_mb).
# Spaces run the container as user 1000; everything the app writes goes under /tmp.
USER 1000

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/_stcore/health', timeout=4)"
CMD ["sh", "-c", "exec python -m deploy.local --replicas ${CL_REPLICAS} --host 0.0.0.0 --port 7860 --demo --run-dir /tmp/contrastive-explorer/cluster"]
