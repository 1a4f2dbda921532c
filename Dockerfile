# aggregator as a container.  The README ("Docker") has the full recipe; in
# short, from a checkout:
#   docker build -t aggregator .
#   mkdir -p config site/source/_posts && cp feeds.yaml config/
#   sudo chown -R 10001:10001 config site
#   docker run -d --init --name aggregator -v aggregator-data:/data \
#     -v "$PWD/config:/config" -v "$PWD/site/source:/site/source" \
#     -p 127.0.0.1:8080:8080 aggregator
# deploy/compose.yaml runs it next to RSSHub (and, optionally, PostgreSQL).
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
COPY deploy/healthcheck.py /app/healthcheck.py
# uid 10001 owns everything the daemon writes: the database (/data), the
# configuration directory (so `aggregator add` works inside the container)
# and the Hexo source directory, where posts go to _posts/ and archived
# images to images/ beside it.
RUN pip install . \
    && useradd --system --uid 10001 --user-group --home-dir /data aggregator \
    && mkdir -p /data /config /site/source/_posts /site/source/images \
    && chown -R aggregator:aggregator /data /config /site
COPY --chown=aggregator:aggregator feeds.yaml /config/feeds.yaml

USER aggregator
WORKDIR /data
# Directories, never single files: editors and `aggregator add` replace
# feeds.yaml with a new file, which a single-file bind mount never sees.
VOLUME ["/data", "/config", "/site/source"]
# Inside the container the port is published by Docker; bind all interfaces
# here and publish to 127.0.0.1 on the host (see the run line above).
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "/app/healthcheck.py"]
CMD ["aggregator", "run", "--export", "/site/source/_posts"]
