# One image for every convscope service (api, worker, flower); the command picks the role.
#
# BASE_IMAGE: any Debian bookworm image. The default is the public slim one; on a machine that
# reaches no image registry, deploy/base-image.sh builds one from Debian's packages.
# TRAIN_SHAPES=1 trains the built-in demo model at build time (deterministic; ~2 min on two
# cores) into /data, which seeds the data volume on first start; with 0 a worker trains it on
# first use instead (or a trained one is copied into the volume, as the compose test does).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE} AS system

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin \
        convscope \
    && mkdir -p /data/models && chown -R convscope:convscope /data

# Read-only root filesystem: everything a process writes goes to /data (a volume) or /tmp
# (a tmpfs); Keras' and Matplotlib's caches and config included.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    KERAS_HOME=/tmp/keras \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=2 \
    CONVSCOPE_DATA_DIR=/data

# The runtime dependencies alone, read from pyproject.toml: the layer that installs them is
# rebuilt only when they change (not for test extras or tool settings).
FROM system AS requirements
COPY pyproject.toml /tmp/
RUN python3 -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt

FROM system
# pip's index, when it is not PyPI (build args only; nothing is kept in the image).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL

WORKDIR /app
# Dependencies first, so that a code change does not download TensorFlow again. pip trusts
# the system's CA bundle (which holds any local CA the base image carries: see
# deploy/base-image.sh), not its own copy of Mozilla's.
COPY --from=requirements /tmp/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && PIP_CERT=/etc/ssl/certs/ca-certificates.crt pip install --no-cache-dir \
        -r /tmp/requirements.txt flower \
    && rm /tmp/requirements.txt

# The code, installed in place (the UI's static files are served from service/static).
COPY pyproject.toml README.md ./
COPY models ./models
COPY worker ./worker
COPY service ./service
# Byte-compiled here: at run time the root filesystem is read-only and PYTHONDONTWRITEBYTECODE
# is set, so without it every process (each CLI command, each API or worker start) compiled
# the project's modules from source.
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt pip install --no-cache-dir --no-deps -e . \
    && python -m compileall -q models worker service \
    && python -c "import service.cli, worker.celery_app"

ARG TRAIN_SHAPES=1
RUN if [ "$TRAIN_SHAPES" = 1 ]; then \
        python -m worker.train shapes && chown -R convscope:convscope /data; \
    fi

USER convscope
VOLUME ["/data"]
EXPOSE 8000
CMD ["convscope", "api", "--host", "0.0.0.0", "--port", "8000"]
