# driftloop service image: one image, every service (`driftloop run <service>`).
#
#   docker build -t driftloop:dev .
#   docker run --rm driftloop:dev --help
#
# torch comes from the CPU-only wheel index: the default wheel pulls GPU libraries
# (gigabytes) that the trainer does not need on CPU nodes. For GPU nodes build with
# --build-arg TORCH_INDEX_URL=<the CUDA wheel index of torch 2.13.0>.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build: a virtual environment with driftloop and its pinned dependencies -------
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Own layer: torch changes far less often than the code.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY streams ./streams
COPY services ./services
# torch is already satisfied from the CPU index; everything else is pinned by pyproject
# and constraints.txt. The check fails the build if package data (the KS table, the
# training defaults) did not make it into the installed package.
RUN pip install -c constraints.txt . \
 && cd / && python -c "import services.drift.kstable as k, services.training as t, pathlib; \
assert k.TABLE_PATH.is_file(), k.TABLE_PATH; \
assert (pathlib.Path(t.__file__).parent / 'defaults.yaml').is_file()"

# ---- runtime ---------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="driftloop" \
      org.opencontainers.image.description="Continuous learning on Kafka: drift, retrain, shadow, promote" \
      org.opencontainers.image.licenses="Apache-2.0"
# A Java runtime for Spark: the cluster variant (DRIFTLOOP_FEAST__VARIANT=cluster) runs
# Feast's Spark offline store with pyspark in local mode inside the pod (Java 17+).
RUN apt-get update \
 && apt-get install -y --no-install-recommends default-jre-headless \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 driftloop \
 && useradd --system --uid 10001 --gid driftloop --home-dir /app --shell /usr/sbin/nologin driftloop \
 && mkdir -p /var/lib/driftloop/registry /var/lib/driftloop/state /app/feature_repo/data \
 && chown -R driftloop:driftloop /var/lib/driftloop /app
COPY --from=build /opt/venv /opt/venv
COPY --chown=driftloop:driftloop feature_repo /app/feature_repo
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DRIFTLOOP_FEAST__REPO=/app/feature_repo \
    DRIFTLOOP_STATE_DIR=/var/lib/driftloop/state \
    DRIFTLOOP_REGISTRY_URI=/var/lib/driftloop/registry \
    DRIFTLOOP_HTTP__PORT=8080 \
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["driftloop"]
CMD ["--help"]
