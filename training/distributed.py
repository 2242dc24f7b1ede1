"""DDP plumbing for ``torchrun``: which rank this is, its device, and sums across ranks.

Under torchrun, torch itself reads the rendezvous from the environment (``init_method="env://"``); a plain
``python -m training`` is a world of one and never touches torch.distributed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.distributed as dist

from models.inference import DeviceError, resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    device: torch.device
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    """The device of this process by ``models.resolve_device``'s names; under torchrun, cuda:<local rank>.

    Raises ``models.DeviceError`` for a device that is malformed or absent.
    """
    device = resolve_device(name)
    if device.type == "cuda":
        if local_rank is not None:  # one GPU per rank: the launcher decides which
            if ":" in name:
                raise DeviceError(f"--device {name}: under torchrun each rank uses cuda:<local rank>; pass cuda")
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def start(device_name: str) -> World:
    """A world of one, or join torchrun's process group: nccl on CUDA, gloo on the CPU."""
    if not dist.is_torchelastic_launched():
        return World(device=pick_device(device_name))
    local_rank = dist.get_node_local_rank(fallback_rank=0)
    device = pick_device(device_name, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), device=device)


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Sum a tensor over all ranks (in place); a no-op in a world of one."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
