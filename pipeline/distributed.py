"""Data-parallel training under ``torchrun``: who this process is, the process group, collectives.

``torchrun --nproc-per-node N`` starts N processes and tells each its place through the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, and ``MASTER_ADDR`` / ``MASTER_PORT`` for the rendezvous).
Without those variables, or with ``WORLD_SIZE=1``, this is a single process: :func:`start` initialises
nothing and every helper here returns its input unchanged, so single-process training runs exactly
the code it ran before distribution existed.

The helpers query ``torch.distributed``'s own (process-wide) state, so callers need not thread a
rank through every function: :func:`is_main` is true in a single process and on rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (as torchrun's environment says)."""

    size: int = 1  # WORLD_SIZE: processes in all
    rank: int = 0  # RANK: this process, 0 .. size - 1
    local_rank: int = 0  # LOCAL_RANK: this process on its machine (picks its GPU)

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env(environ=None) -> World:
    """The World described by ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` (absent: a single process)."""
    environ = os.environ if environ is None else environ
    world = World(int(environ.get("WORLD_SIZE", 1)), int(environ.get("RANK", 0)),
                  int(environ.get("LOCAL_RANK", 0)))
    if world.size < 1 or not 0 <= world.rank < world.size:
        raise ValueError(f"inconsistent torchrun environment: WORLD_SIZE={world.size}, RANK={world.rank}")
    return world


def backend_for(device: torch.device) -> str:
    """nccl between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def start(world: World, device: torch.device) -> torch.device:
    """Join the process group when `world` is distributed; returns the device this process trains on.

    On CUDA each process takes GPU ``LOCAL_RANK`` (``cuda`` -> ``cuda:LOCAL_RANK``) and makes it the
    current device, which NCCL collectives use. A single process: nothing happens, `device` is returned.
    Blocks until every process has joined (torchrun stops them all if one exits first).
    """
    if not world.distributed:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend_for(device), world_size=world.size, rank=world.rank,
                            device_id=device if device.type == "cuda" else None)
    return device


def active() -> bool:
    """True in a process of a distributed run (after :func:`start`)."""
    return dist.is_available() and dist.is_initialized()


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if active():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """True in a single process and on rank 0: the process that writes files and speaks."""
    return rank() == 0


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` in DistributedDataParallel when distributed, else `model` itself.

    DDP copies rank 0's parameters and buffers to every rank when wrapping, rank 0's buffers (BatchNorm
    statistics) again before each training forward, and averages the gradients over the ranks in backward.
    """
    if not active():
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a torch.compile and/or DistributedDataParallel wrapper (its state_dict has no
    ``_orig_mod.`` or ``module.`` prefix)."""
    model = getattr(model, "_orig_mod", model)  # torch.compile's OptimizedModule
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def barrier() -> None:
    if active():
        dist.barrier()


def mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over every process (a copy; the input is untouched).

    On NCCL the all-reduce is queued on the device's stream: no host synchronisation.
    """
    if not active():
        return value
    total = value.detach().clone()
    dist.all_reduce(total)  # SUM: gloo has no AVG
    return total / dist.get_world_size()


def from_main(value):
    """Rank 0's `value` (any picklable object), returned on every process."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def copy_buffers_from_main(model: torch.nn.Module) -> None:
    """Overwrite every buffer of `model` (BatchNorm statistics) with rank 0's, in place."""
    if active():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def max_difference_from_main(model: torch.nn.Module) -> float:
    """max |w_r - w_0| over every parameter and buffer of `model` and every rank r (0.0 alone).

    Costs one broadcast of the whole state: meant for a check at the end of a run, that data
    parallelism kept the replicas identical.
    """
    if not active():
        return 0.0
    device = next(model.parameters()).device
    largest = torch.zeros((), dtype=torch.float64, device=device)
    for tensor in model.state_dict().values():
        main = tensor.detach().clone()
        dist.broadcast(main, src=0)
        if tensor.numel():
            largest = torch.maximum(largest, (tensor.detach().double() - main.double()).abs().max())
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    return float(largest)
