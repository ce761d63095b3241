"""Distributed strategies of the one training loop: none, DDP, or FSDP2 (``fully_shard``), via torch.distributed."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from gptkit.errors import ConfigError

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


@dataclass
class Dist:
    """Where this process stands: rank, world size, device and strategy."""

    strategy: str = "none"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    local_world_size: int = 1  # processes on this node (torchrun's LOCAL_WORLD_SIZE)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.strategy != "none"

    @property
    def nodes(self) -> int:
        """How many nodes the run spans (torchrun starts the same number of processes on each)."""
        return max(1, self.world_size // max(1, self.local_world_size))

    def describe(self) -> str:
        return (
            f"{self.strategy} over {self.world_size} processes ({self.nodes} node(s) x {self.local_world_size}), "
            f"backend {dist.get_backend() if dist.is_initialized() else 'none'}"
        )


def setup(strategy: str, device: str) -> Dist:
    """Join the process group torchrun describes; gloo on CPU, nccl on CUDA.

    Everything comes from the environment torchrun sets on every node: the global RANK and WORLD_SIZE, this
    node's LOCAL_RANK (which picks the CUDA device) and LOCAL_WORLD_SIZE, and MASTER_ADDR/MASTER_PORT (the
    rendezvous' store), so a run spanning nodes needs nothing beyond ``torchrun --nnodes N ...``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and strategy == "none":
        strategy = "ddp"  # launched by torchrun without a strategy: plain data parallelism
    if strategy == "none":
        return Dist(device=resolve_device(device, 0))
    if "RANK" not in os.environ:
        raise ConfigError(f"distributed={strategy!r} needs torchrun (RANK/WORLD_SIZE/MASTER_ADDR unset)")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    dev = resolve_device(device, local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    d = Dist(strategy, rank, world_size, local_rank, dev, local_world_size)
    if d.is_main:
        print(f"distributed: {d.describe()}", flush=True)
    return d


def resolve_device(device: str, local_rank: int) -> torch.device:
    """``auto`` -> this process's CUDA device when there is one, else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev


def wrap(model: nn.Module, d: Dist) -> nn.Module:
    """The model the loop steps: DDP-wrapped, sharded in place by FSDP2, or unchanged."""
    if d.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    if d.strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(d.device.type, (d.world_size,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The GPT4LMHeadModel inside a DDP wrapper (FSDP2 shards in place: nothing to unwrap)."""
    return getattr(model, "module", model)


def no_sync(model: nn.Module, last_micro_step: bool):
    """Skip DDP's gradient all-reduce on all but the last micro-batch of an accumulation."""
    if hasattr(model, "no_sync") and not last_micro_step:
        return model.no_sync()
    return contextlib.nullcontext()


def mean_across_ranks(value: torch.Tensor, d: Dist) -> torch.Tensor:
    """Average a scalar over all ranks (identity without distribution)."""
    if not d.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / d.world_size


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded fp32 parameters on CPU under our names (a collective under FSDP: call on every rank)."""
    inner = unwrap(model)
    names = {name for name, _ in inner.named_parameters()}  # tied lm_head listed once
    state = get_model_state_dict(inner, options=FULL)
    return {k: v for k, v in state.items() if k in names}


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state keyed by parameter name, unsharded on CPU (collective under FSDP)."""
    return get_optimizer_state_dict(unwrap(model), optimizer, options=FULL)


def load_full_state(model: nn.Module, optimizer: torch.optim.Optimizer, params: dict, optim: dict) -> None:
    """Inverse of :func:`full_model_state` / :func:`full_optimizer_state` (every rank passes the full state)."""
    inner = unwrap(model)
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(inner, params, options=options)
    set_optimizer_state_dict(inner, optimizer, optim, options=options)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
