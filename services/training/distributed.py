"""Data-parallel training: the same ``train`` loop under ``torchrun`` with DDP.

Run it with, for example::

    torchrun --nproc_per_node 2 -m services.training.distributed \
        --run-dir runs/r1 --spec spec.json --train train.parquet --val val.parquet

Each process takes ``batch_size / world_size`` rows of every global batch (the
``DistributedSampler`` permutation of the epoch, which with one replica is exactly the
single-process order), gradients are averaged by ``DistributedDataParallel``, so a
step sees the same global batch as one process would. Validation loss is broadcast from
rank 0 so early stopping decides the same everywhere; a stop request on any rank stops
all of them at the same step. Only rank 0 writes checkpoints, followed by a barrier.
Backend: gloo on CPU, nccl when every rank has a GPU.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from services.featurespec import FeatureSpec, ModelSpec
from services.model.task import Task
from services.training.config import load_config
from services.training.loop import TrainResult, train
from streams.settings import torchrun_local_rank


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and the few collectives the loop needs."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints and reports progress."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank."""
        tdist.barrier()

    def broadcast_float(self, value: float) -> float:
        """Rank 0's ``value`` on every rank."""
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        tdist.broadcast(t, src=0)
        return float(t.item())

    def any_flag(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
        return bool(t.item())

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` wrapped in DistributedDataParallel (parameters synced from rank 0)."""
        if self.device.type == "cuda":
            return DistributedDataParallel(model, device_ids=[self.device.index])
        return DistributedDataParallel(model)


def init_from_env() -> DistContext:
    """Join the process group described by torchrun's environment variables."""
    use_cuda = torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend)
    rank, world = tdist.get_rank(), tdist.get_world_size()
    if use_cuda:
        local = torchrun_local_rank()
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return DistContext(rank, world, device)


def spec_from_json(data: dict) -> ModelSpec:
    """A ``ModelSpec`` from its plain JSON form (used by the command line below)."""
    return ModelSpec(
        model=data["model"],
        entity=data["entity"],
        features=tuple(FeatureSpec(**f) for f in data["features"]),
        label=data.get("label", "label"),
    )


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--spec", required=True, help="ModelSpec as JSON")
    parser.add_argument("--train", required=True, help="training frame (parquet)")
    parser.add_argument("--val", required=True, help="validation frame (parquet)")
    parser.add_argument("--config", default=None, help="YAML config (default: defaults.yaml)")
    parser.add_argument("--overrides", default="{}", help="JSON dict merged into the config")
    parser.add_argument("--result", default=None, help="rank 0 writes a JSON summary here")
    parser.add_argument("--task", default="binary",
                        help='the task: binary, regression or JSON such as '
                             '\'{"kind": "multiclass", "classes": [0, 1, 2]}\'')
    parser.add_argument("--factory", default=None, help="model factory package.module:function")
    args = parser.parse_args(argv)

    ctx = init_from_env()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        spec = spec_from_json(json.loads(Path(args.spec).read_text()))
        config = load_config(args.config, json.loads(args.overrides))
        task = Task.model_validate(
            json.loads(args.task) if args.task.lstrip().startswith("{") else args.task)
        result: TrainResult = train(
            args.run_dir,
            spec,
            pd.read_parquet(args.train),
            pd.read_parquet(args.val),
            config,
            stop_event=stop,
            dist=ctx,
            task=task,
            factory=args.factory,
        )
        if ctx.is_main and args.result:
            summary = {
                "status": result.status,
                "step": result.step,
                "best_val_loss": result.best_val_loss,
                "metrics": result.metrics,
                "checkpoint": str(result.checkpoint.path) if result.checkpoint else None,
                "world_size": ctx.world_size,
            }
            Path(args.result).write_text(json.dumps(summary))
    finally:
        tdist.destroy_process_group()
    return 0 if result.status != "interrupted" else 3


if __name__ == "__main__":
    sys.exit(_main())
