"""Tools that prove what the docs claim; none is needed to train or serve (see docs/architecture.md).

- ``container_smoke.sh``: build the image with podman and call the running container (CI).
- ``lb_check.sh``: the shipped nginx configuration in front of two real API processes (CI).
- ``check_docs_offline.py``: /docs in headless Chromium, with no request leaving the machine (tests).
- ``profile_service.py``: py-spy samples of a server under load (``python -m verification.profile_service``).
- ``measure_replica_memory.py``: what one serving replica costs in memory (docs/scaling.md).
- ``pack_gpu_check.sh``: the offline bundle that scripts/gpu_check.sh installs on a GPU host (``cifar_jpeg.py``
  turns the CIFAR-10 python version into the image folders it packs).
- ``rehearse_gpu_check.sh``: scripts/gpu_check.sh on the CPU, in an environment like the GPU host's
  (``gpu_host_env.py``, ``gpu_host_packages.txt``), its results checked by ``gpu_results.py`` (CI; docs/gpu.md).
"""
