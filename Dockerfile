# The hosted demo as a container (Hugging Face Spaces, Docker SDK; any Docker host).
#   docker build -t contrastive-explorer . && docker run -p 7860:7860 contrastive-explorer
# CPU-only PyTorch, demo mode on (ui/demo.py): capped trainings, bounded runs folder, no paths shown.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    CL_DEMO=1 \
    CL_RUNS_DIR=/tmp/contrastive-explorer/runs \
    CL_DATA_DIR=/tmp/contrastive-explorer/data \
    CL_CACHE_DIR=/tmp/contrastive-explorer/cache \
    NUMBA_CACHE_DIR=/tmp/contrastive-explorer/numba \
    MPLCONFIGDIR=/tmp/contrastive-explorer/mpl \
    HOME=/tmp/contrastive-explorer/home

WORKDIR /app
COPY requirements-hosted.txt ./
RUN pip install -r requirements-hosted.txt

COPY . .
# Spaces run the container as user 1000; everything the app writes goes under /tmp.
RUN mkdir -p /tmp/contrastive-explorer && chmod -R a+rwX /tmp/contrastive-explorer
USER 1000

EXPOSE 7860
CMD ["streamlit", "run", "app.py", "--server.port=7860", "--server.address=0.0.0.0"]
