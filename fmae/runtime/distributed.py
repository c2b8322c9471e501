"""The process group of a ``torchrun`` launch, or a stand-in for a single process.

Pre-training (:mod:`fmae.pretraining.train`) and probing (:mod:`fmae.downstream.probe`) run the same code
on one process or many: :class:`Distributed` reads ``torchrun``'s environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), joins the group (NCCL on GPUs, gloo on CPUs)
and turns every collective into a no-op when there is one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from fmae.runtime.device import resolve_device


class Distributed:
    """This process's place in the launch: ``rank`` of ``world``, on ``device``.

    ``device_name`` is resolved as in :func:`fmae.runtime.device.resolve_device`; under a
    multi-process launch on CUDA every process takes the GPU of its ``LOCAL_RANK``.
    """

    def __init__(self, device_name: str) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        device = resolve_device(device_name)
        if self.world > 1 and device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        self.device = device
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The mean of ``values`` (any shape, on ``device``) over the ranks."""
        if self.world > 1:
            values = values.clone()
            dist.all_reduce(values)
            values /= self.world
        return values

    def gather_rows(self, index: torch.Tensor, rows: torch.Tensor, count: int) -> torch.Tensor:
        """``[count, ...]`` on every rank, row ``index[i]`` of it from some rank's ``rows[i]``
        (int64 ``[R]`` and ``[R, ...]`` CPU tensors, each rank its own ``R``). Rows that
        several ranks give (a padded shard repeats items) must be equal; rows that no
        rank gives are zero."""
        if self.world == 1:
            out = torch.zeros((count, *rows.shape[1:]), dtype=rows.dtype)
            out[index] = rows
            return out
        parts: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * self.world
        dist.all_gather_object(parts, (index.cpu(), rows.cpu()))
        out = torch.zeros((count, *rows.shape[1:]), dtype=rows.dtype)
        for part_index, part_rows in parts:
            out[part_index] = part_rows
        return out

    def check_in_sync(self, module: torch.nn.Module) -> None:
        """Raise when the ranks' weights differ: DDP must keep them bit-identical."""
        if self.world == 1:
            return
        sums = torch.stack([p.detach().double().sum() for p in module.parameters()]).to(self.device)
        gathered = [torch.empty_like(sums) for _ in range(self.world)]
        dist.all_gather(gathered, sums)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            raise RuntimeError("the ranks' model weights have diverged; stopping")

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
