# One image for every convscope service (api, worker, flower); the command picks the role.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    CONVSCOPE_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY worker ./worker
COPY service ./service
RUN pip install --no-cache-dir . flower

# Train the built-in demo model at build time (deterministic; ~2 min on 2 cores), into a
# folder that seeds the /data volume on first start.
RUN CONVSCOPE_DATA_DIR=/data python -m worker.train shapes

VOLUME ["/data"]
EXPOSE 8000
CMD ["convscope", "api", "--host", "0.0.0.0", "--port", "8000"]
