# carepath worker and API image. Build: docker build -t carepath .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 carepath
WORKDIR /app
COPY pyproject.toml README.md worker.py ./
COPY carepath ./carepath
COPY workflows ./workflows
COPY activities ./activities
COPY db ./db
RUN pip install . && mkdir -p /var/lib/carepath && chown carepath /var/lib/carepath
USER carepath
# Default: the worker. The API service runs `carepath api --host 0.0.0.0 --port 8000`.
CMD ["carepath", "worker"]
