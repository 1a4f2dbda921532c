# aggregator as a container:
#   docker build -t aggregator .
#   docker run -d --name aggregator -v aggregator-data:/data -v "$PWD/posts:/export" \
#     -v "$PWD/feeds.yaml:/config/feeds.yaml:ro" -p 127.0.0.1:8080:8080 aggregator
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AGGREGATOR_DATABASE_URL=sqlite:////data/aggregator.db \
    AGGREGATOR_CONFIG=/config/feeds.yaml \
    AGGREGATOR_HTTP=0.0.0.0:8080

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY aggregator ./aggregator
COPY alembic ./alembic
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data aggregator \
    && mkdir -p /data /export /config \
    && chown aggregator /data /export
COPY feeds.yaml /config/feeds.yaml

USER aggregator
WORKDIR /data
VOLUME ["/data", "/export"]
# Inside the container the port is published by Docker; bind all interfaces
# here and publish to 127.0.0.1 on the host (see the run line above).
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"
CMD ["aggregator", "run", "--export", "/export"]
