# alexnet-service: one image for both jobs in docker-compose.yml.
#   serve (default CMD): alexnet-serve, one process, one model copy; scale with replicas, not workers (docs/scaling.md)
#   train (compose `train` service): alexnet-train-if-missing, which trains only when no checkpoint exists
#
#   docker build -t alexnet-service .
#   docker build --build-arg BASE_IMAGE=<another image with python3 >= 3.11 and venv> -t alexnet-service .
#
# Default base: the official PyTorch runtime image for our newest tested torch (2.14.1), CUDA 12.6 flavour.
# "runtime" ships the CUDA and cuDNN libraries torch needs but not the compiler toolchain of "devel"
# (roughly half the size; nothing here compiles CUDA code). CUDA 12.6 runs on the widest range of
# installed drivers and GPUs (Maxwell to Hopper); Blackwell GPUs need a cuda12.8 or cuda13.x tag of the
# same release, e.g. --build-arg BASE_IMAGE=pytorch/pytorch:2.14.1-cuda13.2-cudnn9-runtime.
ARG BASE_IMAGE=pytorch/pytorch:2.14.1-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# A venv that still sees the base image's packages: the CUDA torch of pytorch/pytorch satisfies our
# requirement and is reused, not downloaded again; a bare Python base gets torch installed into the venv.
# (A venv also keeps pip away from a distribution's externally-managed system Python.)
RUN python3 -m venv --system-site-packages "$VIRTUAL_ENV"

# Dependencies in their own layer, read from pyproject.toml alone: changing code does not reinstall torch. The
# service's own, plus the `grpc` extra (grpcio, the Open Inference Protocol's and grpc.health.v1's generated code):
# the image serves gRPC too (ALEXNET_GRPC_PORT below), and the manifests' liveness probe asks it.
COPY pyproject.toml /tmp/deps/
RUN python -c "import tomllib, sys; p = tomllib.load(open(sys.argv[1], 'rb'))['project']; sys.stdout.write('\n'.join(p['dependencies'] + p['optional-dependencies']['grpc']))" \
        /tmp/deps/pyproject.toml > /tmp/deps/requirements.txt \
    && pip install --no-cache-dir -r /tmp/deps/requirements.txt \
    && rm -rf /tmp/deps

# The code (.dockerignore lets in only the packages, pyproject.toml, README.md and the train script).
COPY . /tmp/src
RUN pip install --no-cache-dir --no-deps /tmp/src \
    && install -m 0755 /tmp/src/scripts/train_if_missing.sh /usr/local/bin/alexnet-train-if-missing \
    && rm -rf /tmp/src

# Non-root, with a numeric id so runtimes can verify it (e.g. Kubernetes runAsNonRoot). /checkpoints and /data
# exist in the image owned by this user, so named volumes mounted there start with that ownership and the
# train service can write into them.
RUN groupadd --system --gid 10001 alexnet \
    && useradd --system --no-log-init --uid 10001 --gid alexnet --create-home --home-dir /home/alexnet alexnet \
    && mkdir -p /checkpoints /data /srv/alexnet \
    && chown alexnet:alexnet /checkpoints /data /srv/alexnet
USER 10001:10001
WORKDIR /srv/alexnet

ENV ALEXNET_CHECKPOINT=/checkpoints/alexnet-cifar10.safetensors \
    ALEXNET_DATA_DIR=/data

# Caches in /tmp, not under $HOME: with a read-only root filesystem (docker-compose.yml, Kubernetes'
# readOnlyRootFilesystem) a tmpfs at /tmp is the one writable place besides the volumes. XDG: torch and
# pip; matplotlib: the trainer's report; Triton and CUDA: torch.compile's and the driver's kernel caches.
ENV XDG_CACHE_HOME=/tmp/cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    TRITON_CACHE_DIR=/tmp/triton \
    CUDA_CACHE_PATH=/tmp/cache/nv

# The Open Inference Protocol over gRPC (tritonclient.grpc, KServe's gRPC clients) beside HTTP, from the same
# process and event loop; grpc.health.v1 on it is what Kubernetes' native grpc liveness probe asks
# (deploy/kubernetes). On by default in the image, unlike the service (0: off), since the image installs its extra
# above; -e ALEXNET_GRPC_PORT=0 turns it off. 8001 beside 8000, as Triton numbers them.
ENV ALEXNET_GRPC_PORT=8001
EXPOSE 8000 8001
# /health answers 200 once the weights are loaded and warmed up, 503 before; urlopen raises on 503, so the
# exit status follows readiness. Python is in every base this image supports; curl is not.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

# Exec form: alexnet-serve (the service's one entry point, as `make serve` runs it) is PID 1 and gets SIGTERM
# directly: /health turns 503 at once, in-flight requests finish, then it exits. One process per container.
CMD ["alexnet-serve", "--host", "0.0.0.0", "--port", "8000"]
