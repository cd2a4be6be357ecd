# carepath worker and API image. Build: docker build -t carepath .
# Default command: the worker. The API: carepath api --host 0.0.0.0 --port 8000 (health at /health).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --gid 10001 carepath && useradd --create-home --uid 10001 --gid 10001 carepath

# Install from a throwaway copy, so only the installed package is importable at run time.
COPY pyproject.toml README.md worker.py /src/
COPY carepath /src/carepath
COPY workflows /src/workflows
COPY activities /src/activities
COPY db /src/db
RUN pip install /src && rm -rf /src \
    && install -d -o carepath -g carepath /var/lib/carepath

# The working directory is the writable data volume (notifications file, any relative paths).
WORKDIR /var/lib/carepath
USER 10001:10001
EXPOSE 8000
CMD ["carepath", "worker"]
