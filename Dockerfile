# aggregator as a container: `docker build -t aggregator .`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    AGGREGATOR_DATABASE_URL=sqlite:////data/aggregator.db

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY aggregator ./aggregator
COPY alembic ./alembic
COPY feeds.yaml ./feeds.yaml
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data aggregator \
    && mkdir -p /data /export \
    && chown aggregator /data /export

USER aggregator
WORKDIR /data
VOLUME ["/data", "/export"]
EXPOSE 8080
CMD ["aggregator", "run", "--config", "/app/feeds.yaml"]
