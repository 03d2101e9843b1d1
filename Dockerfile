# The worker image. Installs only the project and its pinned dependencies from the package index
# (ops/constraints.txt); nothing is downloaded from anywhere else.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ops/constraints.txt ops/constraints.txt
COPY compliance compliance
COPY schemas schemas
COPY ehr ehr
COPY runtime runtime
COPY streams streams
COPY gateway gateway
COPY cli cli
COPY synthetic synthetic
RUN pip install -c ops/constraints.txt . && useradd --system --uid 10001 worker \
    && mkdir -p /data && chown worker /data
USER worker
ENV TC_WEB_HOST=0.0.0.0 TC_DATA_DIR=/data
EXPOSE 6066 6068 2575
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:6066/health', timeout=2).status != 200)"
ENTRYPOINT ["therapy-compliance"]
CMD ["worker"]
