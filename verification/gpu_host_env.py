"""A virtual environment like the GPU host's, for the CPU rehearsal of scripts/gpu_check.sh.

    .venv/bin/python verification/gpu_host_env.py DEST      # -> DEST/bin/python

The GPU machine has PyTorch and some two hundred other packages (verification/gpu_host_packages.txt) but not the
service's web stack, tritonclient or the dev extras: gpu_check.sh installs what it needs from the bundle's wheels.
The rehearsal must find the same: DEST is a fresh venv that sees, of the packages installed beside the Python
running this, exactly those the GPU host also has (torch, numpy, pytest, httpx...) and nothing else, so a step
that needs a package the bundle does not bring fails here as it would there. The packages are hard-linked into
DEST/host-site (seconds, no copy of torch's gigabytes; DEST must be on the same file system), and a .pth file
puts that folder on the venv's path.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HOST_PACKAGES = Path(__file__).with_name("gpu_host_packages.txt")
OWN = {"pip", "setuptools", "wheel"}  # the venv brings its own


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def host_packages(path: Path = HOST_PACKAGES) -> set[str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return {normalise(line) for line in lines if line and not line.startswith("#")}


def top_level_entries(distribution: metadata.Distribution) -> set[Path]:
    """The files and folders a distribution puts at the top of its site-packages (its package, its .dist-info)."""
    root = Path(distribution.locate_file(""))
    names = {Path(str(f)).parts[0] for f in distribution.files or ()}
    return {root / name for name in names if name not in ("..", "__pycache__")}


def link_into(entry: Path, target: Path) -> None:
    """``entry`` (a file or a folder) hard-linked into ``target``: no byte is copied."""
    if entry.is_dir():
        shutil.copytree(entry, target / entry.name, symlinks=True, copy_function=os.link)
    else:
        os.link(entry, target / entry.name)


def build(dest: Path) -> list[str]:
    """The venv at ``dest`` with the host's packages that are installed here; returns their names."""
    wanted = host_packages() - OWN
    found = {normalise(d.metadata["Name"]): d for d in metadata.distributions()}
    linked = sorted(wanted & found.keys())
    # Entries shared by several distributions (the nvidia/ namespace folder) are linked once.
    entries = set().union(*(top_level_entries(found[name]) for name in linked))
    site = dest / "host-site"
    site.mkdir(parents=True)
    for entry in sorted(entries):
        link_into(entry, site)
    subprocess.run([sys._base_executable, "-m", "venv", str(dest)], check=True)  # type: ignore[attr-defined]
    purelib = subprocess.run(
        [str(dest / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "gpu-host.pth").write_text(f"{site.resolve()}\n")
    return linked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="the new environment's folder (must not exist)")
    args = parser.parse_args(argv)
    if args.dest.exists():
        parser.error(f"{args.dest} exists")
    linked = build(args.dest)
    print(f"{args.dest}: a venv seeing {len(linked)} of the GPU host's packages from here: {', '.join(linked)}")


if __name__ == "__main__":
    main()
