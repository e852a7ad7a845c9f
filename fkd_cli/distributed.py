"""Distributed data parallel plumbing: process-group set-up, stopping every rank at the same batch
on Ctrl-C/SIGTERM, and a seeded sampler that can resume mid-epoch."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): gloo on CPU, NCCL on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between batches, so the run stops after saving."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def should_stop(self, dist_info: "DistInfo", device: torch.device) -> bool:
        """Under DDP every rank must stop at the same batch, or the others hang in an all-reduce."""
        if dist_info.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([1.0 if self.requested else 0.0], device=device)  # NCCL reduces only on the GPU
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.requested = bool(flag.item())
        return self.requested

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class ResumableSampler(torch.utils.data.Sampler):
    """A seeded per-epoch shuffle (split across DDP ranks) that can skip batches already trained on."""

    def __init__(self, dataset, dist_info: DistInfo, seed: int):
        from torch.utils.data.distributed import DistributedSampler

        self.base = DistributedSampler(dataset, num_replicas=dist_info.world, rank=dist_info.rank, shuffle=True,
                                       seed=seed, drop_last=dist_info.world > 1)
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __iter__(self):
        return iter(list(self.base)[self.skip:])

    def __len__(self) -> int:
        return len(self.base) - self.skip


def broadcast_object(value, dist_info: DistInfo):
    """Rank 0's `value` on every rank (e.g. the run folder only rank 0 may claim)."""
    if dist_info.world <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(dist_info: DistInfo) -> None:
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()


def shutdown(dist_info: DistInfo) -> None:
    """Close the process group once every process is done with it: a process that exits with gloo's
    threads still running can abort at exit ("terminate called without an active exception")."""
    if dist_info.world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
