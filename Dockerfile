# The project on the official Ray image of the pinned Ray version for Python 3.11, installed from requirements.lock.
#
#   make image                  # rlportfolio:2.60.0-py311-cpu: CPU-only torch (serving, CPU training)
#   make image VARIANT=gpu      # rlportfolio:2.60.0-py311-gpu: CUDA torch, for GPU training (deploy/rayjob.yaml)
#
# deploy/rayservice.yaml and deploy/rayjob.yaml name these tags; docs/container.md says how to push them and what was
# built and run on the machine this was written on (no container engine there: a chroot of the same install).
# RAY_VERSION must be requirements.lock's ray pin: the Makefile passes it from the lock, and
# tests/integration/test_image.py checks the default below against it.
ARG RAY_VERSION=2.60.0
# cpu: rayproject/ray:<version>-py311-cpu (Ubuntu); gpu: rayproject/ray:<version>-py311-gpu (Ray's alias of its
# -cuXXX tag: an NVIDIA CUDA base, which needs the NVIDIA container runtime).
ARG RAY_VARIANT=cpu
FROM rayproject/ray:${RAY_VERSION}-py311-${RAY_VARIANT}
ARG RAY_VARIANT

# Ray's images run as the user ray (group users) with their Python 3.11 first on PATH; /app belongs to ray so the
# editable install can write its metadata and commands run from the checkout can write runs/ and reports/.
USER root
WORKDIR /app
RUN chown ray:users /app
USER ray

# torch first, in its own layer (it is most of the image and changes least). The CPU variant takes the CPU build
# from PyTorch's CPU index (PyPI's Linux wheel is the CUDA build, which pulls several GB of nvidia-* wheels); the GPU
# variant takes PyPI's CUDA build in the next step. --no-deps: torch's own requirements come from the lock next.
# The version is requirements.lock's torch pin (tests/integration/test_image.py checks it).
RUN if [ "$RAY_VARIANT" = cpu ]; then \
        pip install --no-cache-dir --no-deps --index-url https://download.pytorch.org/whl/cpu torch==2.13.0; \
    fi

# The whole checkout (.dockerignore leaves out .git, .venv, tests, data and outputs): configs/ and benchmarks/ are
# read relative to it (`rlportfolio bench`, the RayJob's --config configs/sweep_gpu.yaml). An editable install keeps
# the code where those paths resolve; a regular one would copy the packages into site-packages without them.
COPY --chown=ray:users . /app

# Exactly the lock's pins: -c requirements.lock constrains every distribution the project requires (an installed
# one at another version, e.g. from Ray's base image, is replaced), and check_pins.py fails the build if any
# required distribution is not at its pin. The CPU torch installed above satisfies torch==2.13.0 (2.13.0+cpu).
RUN pip install --no-cache-dir -c requirements.lock -e . \
    && python deploy/check_pins.py requirements.lock \
    && rlportfolio --help

# Ray 2.60 turns token auth on by default; the project's Ray instances and the deploy manifests turn it off (the
# app's own bearer token, SERVE_API_TOKEN, guards its API). Pass -e RAY_AUTH_MODE=token to keep Ray's.
ENV RAY_AUTH_MODE=disabled
# Serve's HTTP port, Ray's dashboard, the metrics port the deploy manifests scrape.
EXPOSE 8000 8265 8080

# Serve the exported agents mounted at /app/models (deploy/rayservice.yaml mounts them there), e.g.
#   docker run --rm -p 8000:8000 -v "$PWD/models:/app/models:ro" rlportfolio:2.60.0-py311-cpu
# KubeRay replaces this command with `ray start ...` in every pod.
CMD ["rlportfolio", "serve", "--models", "/app/models", "--host", "0.0.0.0"]
