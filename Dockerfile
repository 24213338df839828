# syntax=docker/dockerfile:1
# The promptbank image: the coordinator (`promptbank serve`, the entrypoint) and the Ray nodes that run
# the backbone replicas (KubeRay replaces the entrypoint with `ray start`). See README, Deploy on a cluster.
#
#   docker build -t promptbank:0.1.0 .                       # CPU build of torch (the default)
#   docker build -t promptbank:0.1.0-cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .   # CUDA build for GPU workers
#
# Both builds install the same Python (managed by uv, pinned through UV_IMAGE and PYTHON_VERSION) and the
# same Ray, whatever the base: a Ray cluster and its clients must agree on both exactly.

ARG BASE_IMAGE=debian:bookworm-slim
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

# ---- build: a virtualenv in /opt/venv holding promptbank and everything it imports ----
FROM ${BASE_IMAGE} AS build
ARG PYTHON_VERSION=3.11
ARG TORCH_VERSION=2.13.0
# PyPI's torch for Linux is a CUDA build of several GB; this index serves the CPU build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG RAY_VERSION=2.60.0
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    VIRTUAL_ENV=/opt/venv
RUN uv python install "${PYTHON_VERSION}" && uv venv --python "${PYTHON_VERSION}" /opt/venv
# torch first, from its own index: the project's torch pin is then already met and nothing pulls another.
RUN uv pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY promptbank ./promptbank
COPY promptbank_api ./promptbank_api
COPY promptbank_domain ./promptbank_domain
COPY promptbank_kinds ./promptbank_kinds
COPY coordinator ./coordinator
COPY workers ./workers
COPY bank ./bank
RUN uv pip install "ray[default]==${RAY_VERSION}" .
# Fail the build, not the cluster, when a resolver swapped torch or Ray for another version.
RUN /opt/venv/bin/python -c "import sys, torch, ray; want = sys.argv[1:]; got = [torch.__version__.split('+')[0], ray.__version__]; assert got == want, (got, want)" "${TORCH_VERSION}" "${RAY_VERSION}" \
    && /opt/venv/bin/promptbank --help >/dev/null

# ---- runtime: the virtualenv and its Python on a fresh base, run as an unprivileged user ----
FROM ${BASE_IMAGE} AS runtime
# wget: KubeRay's probes on Ray pods call it; ca-certificates: downloads the server is allowed to make.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wget ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 promptbank \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/promptbank --shell /bin/bash promptbank
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
# KubeRay starts Ray through `bash -l`, whose /etc/profile resets PATH: put the virtualenv back on it.
RUN echo 'export PATH=/opt/venv/bin:$PATH' > /etc/profile.d/promptbank.sh
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0
USER 10001:10001
WORKDIR /home/promptbank
EXPOSE 50051
ENTRYPOINT ["promptbank"]
CMD ["--help"]
