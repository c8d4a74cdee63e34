"""The training loop: resumable, deterministic, early-stopped fine-tuning of a TabularModel.

What one call to ``train`` does:

- AdamW, a LambdaLR schedule (linear warm-up over ``warmup_share`` of the steps, then
  cosine decay to ``min_lr_share`` of the peak), gradient clipping, BCE-with-logits,
  validation every ``eval_every_steps`` with early stopping on validation loss; the
  best weights are the result.
- Deterministic: everything is seeded from ``config.seed``; the sample order of epoch
  ``e`` is the ``DistributedSampler`` permutation for ``seed + e`` (the same class with
  one replica when not distributed), so step ``s`` always sees the same batch.
- Resumable: a checkpoint (weights, optimizer, scheduler, grad scaler, step, RNG
  states, best score, early-stopping counter, best weights, preprocessing, config, run
  id) is written every ``checkpoint.every_steps``, at the end and when ``stop_event``
  is set (the caller sets it on SIGTERM; the result is then ``interrupted``). With
  ``resume=True`` and a checkpoint in ``run_dir`` the run continues from its step with
  the identical optimizer/scheduler/RNG state, using the checkpoint's config and
  preprocessing; a run whose last checkpoint is final returns at once.
- Mixed precision only on CUDA: autocast with bfloat16 where supported, else float16
  with a GradScaler. The CPU path is plain float32.
- Threads: with ``num_threads="auto"`` a small model (< 1M parameters) trains on one
  thread, which is faster than two here; the previous setting is restored afterwards.

Fine-tuning (``init_from`` = the parent's weights, ``preprocessing`` and
``model_meta``): the parent's numeric scaling is KEPT, not refitted. The parent's
first layer was learned for inputs scaled with the parent's statistics; refitting
would silently change what every weight means, and the shift we are adapting to is
exactly the difference between the two. Shifted inputs are simply off-centre in the
parent's scale, which the network can learn from, and the replay rows keep the old
region anchored. Categorical vocabularies are extended with categories first seen in
the new training part (appended, so existing indices keep their embedding rows); each
new row starts as a copy of the unknown bucket, which is how the parent scored that
category. The architecture stays the parent's; the peak learning rate is scaled by
``finetune.lr_scale`` and the warm-up is ``finetune.warmup_share`` of the steps (short:
the parent's weights are already good). A parent fitted for another feature set is refused
(``PreprocessingError``): train from scratch instead.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DistributedSampler

from services.featurespec import ModelSpec
from services.model.builder import build_module, module_from_meta
from services.model.preprocessing import EncodedFrame, Preprocessor
from services.model.tabular import TabularModel, grow_embeddings
from services.training.checkpoint import (
    CheckpointInfo,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from services.training.config import TrainingConfig
from services.training.progress import NullProgress, ProgressReporter, auto_progress

if TYPE_CHECKING:
    import threading

    from services.training.distributed import DistContext

STATE_FORMAT = 1
SMALL_MODEL_PARAMS = 1_000_000
Status = Literal["completed", "early_stopped", "interrupted"]


class ParentModel(Protocol):
    """What fine-tuning needs from a parent (a registry ``LoadedModel`` or a ``TrainResult``)."""

    @property
    def state_dict(self) -> Mapping[str, torch.Tensor]: ...

    @property
    def preprocessing(self) -> dict[str, Any]: ...

    @property
    def model_meta(self) -> dict[str, Any]: ...


@dataclass
class TrainResult:
    """Outcome of ``train``: the best weights and how the run went."""

    status: Status
    run_id: str
    step: int
    total_steps: int
    best_val_loss: float
    model: TabularModel
    preprocessor: Preprocessor
    config: TrainingConfig
    checkpoint: CheckpointInfo | None
    resumed_from_step: int | None
    fine_tuned: bool
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    steps_run: int = 0

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The best weights (CPU tensors)."""
        return {k: v.detach().cpu() for k, v in self.model.state_dict().items()}

    @property
    def preprocessing(self) -> dict[str, Any]:
        """The preprocessing as its JSON-able dict."""
        return self.preprocessor.to_dict()

    @property
    def model_meta(self) -> dict[str, Any]:
        """Architecture description for ``TabularModel.from_meta``."""
        return self.model.meta

    @property
    def steps_per_s(self) -> float:
        """Optimizer steps per second of this call (resumed steps excluded)."""
        return self.steps_run / self.duration_s if self.duration_s > 0 else 0.0


# -- helpers -----------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def lr_factor(step: int, total_steps: int, warmup_share: float, min_share: float) -> float:
    """Multiplier of the peak learning rate at scheduler step ``step``."""
    warmup = math.ceil(warmup_share * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    span = max(1, total_steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    return min_share + (1.0 - min_share) * 0.5 * (1.0 + math.cos(math.pi * progress))


def pick_device(choice: str) -> torch.device:
    """``auto`` means CUDA when available, else CPU."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError("config asks for cuda but none is available")
        return torch.device("cuda")
    return torch.device("cpu")


def amp_settings(device: torch.device) -> tuple[bool, torch.dtype]:
    """(use autocast, dtype): bfloat16 if the GPU supports it, else float16; off on CPU."""
    if device.type != "cuda":
        return False, torch.float32
    if torch.cuda.is_bf16_supported():
        return True, torch.bfloat16
    return True, torch.float16


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


@dataclass
class _Tensors:
    numeric: torch.Tensor
    categorical: torch.Tensor
    label: torch.Tensor

    @classmethod
    def make(cls, enc: EncodedFrame, labels: pd.Series, device: torch.device) -> _Tensors:
        y = pd.to_numeric(labels, errors="coerce").to_numpy(np.float32)
        if not np.isfinite(y).all():
            raise ValueError("labels must be present and numeric (0/1)")
        return cls(
            torch.from_numpy(enc.numeric).to(device),
            torch.from_numpy(enc.categorical).to(device),
            torch.from_numpy(y).to(device),
        )


def _evaluate(
    model: nn.Module, data: _Tensors, use_amp: bool, amp_dtype: torch.dtype, chunk: int = 8192
) -> tuple[float, np.ndarray]:
    model.eval()
    total = 0.0
    scores = []
    with torch.no_grad():
        for lo in range(0, len(data.label), chunk):
            sl = slice(lo, lo + chunk)
            with torch.autocast(data.label.device.type, dtype=amp_dtype, enabled=use_amp):
                logits = model(data.numeric[sl], data.categorical[sl])
            logits = logits.float()
            total += nn.functional.binary_cross_entropy_with_logits(
                logits, data.label[sl], reduction="sum"
            ).item()
            scores.append(logits.cpu().numpy())
    n = max(len(data.label), 1)
    return total / n, np.concatenate(scores) if scores else np.zeros(0)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (tied scores get average ranks); NaN with one class."""
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _set_threads(config: TrainingConfig, n_params: int) -> int | None:
    """Apply the thread policy; returns the previous value to restore (None: unchanged)."""
    previous = torch.get_num_threads()
    if config.num_threads == "auto":
        wanted = 1 if n_params < SMALL_MODEL_PARAMS else previous
    else:
        wanted = int(config.num_threads)
    if wanted == previous:
        return None
    torch.set_num_threads(wanted)
    return previous


def _clone_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


# -- the loop ----------------------------------------------------------------------------
def train(
    run_dir: str | Path,
    spec: ModelSpec,
    train_df: pd.DataFrame,
    val_df: pd.DataFrame,
    config: TrainingConfig,
    *,
    init_from: ParentModel | None = None,
    resume: bool = True,
    progress: ProgressReporter | Literal["auto"] | None = "auto",
    on_checkpoint: Callable[[CheckpointInfo], None] | None = None,
    stop_event: threading.Event | None = None,
    run_id: str | None = None,
    dist: DistContext | None = None,
) -> TrainResult:
    """Train (or fine-tune, or resume) a model; see the module docstring."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    is_main = dist is None or dist.is_main
    world = dist.world_size if dist is not None else 1
    rank = dist.rank if dist is not None else 0
    if progress == "auto":
        progress = auto_progress() if is_main else NullProgress()
    reporter: ProgressReporter = progress or NullProgress()

    # -- state: resume > fine-tune > scratch ---------------------------------------------
    ckpt = latest_checkpoint(run_dir) if resume else None
    state: dict[str, Any] | None = load_checkpoint(ckpt) if ckpt is not None else None
    if dist is not None:
        dist.barrier()  # nobody writes before every rank has read
    fine_tuned = False
    if state is not None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"checkpoint {ckpt} has unsupported format {state.get('format')}")
        config = TrainingConfig.model_validate(state["config"])
        run_id = str(state["run_id"])
        preprocessor = Preprocessor.from_dict(state["preprocessing"])
        preprocessor.check_spec(spec)
        model_meta = state["model_meta"]
        model = module_from_meta(model_meta)
        fine_tuned = bool(state["fine_tuned"])
        peak_lr = float(state["peak_lr"])
    else:
        run_id = run_id or uuid.uuid4().hex
        seed_everything(config.seed)
        if init_from is not None:
            parent = Preprocessor.from_dict(dict(init_from.preprocessing))
            parent.check_spec(spec)
            preprocessor = parent.extend_vocabularies(train_df)
            weights, model_meta = grow_embeddings(
                dict(init_from.state_dict), dict(init_from.model_meta), preprocessor.cardinalities
            )
            model = module_from_meta(model_meta)
            model.load_state_dict(weights)
            fine_tuned = True
            peak_lr = config.optimizer.lr * config.finetune.lr_scale
        else:
            preprocessor = Preprocessor.fit(spec, train_df)
            model = build_module(preprocessor.schema, config.architecture)
            peak_lr = config.optimizer.lr
        model_meta = model.meta

    device = dist.device if dist is not None else pick_device(config.device)
    use_amp, amp_dtype = amp_settings(device)
    n_params = sum(p.numel() for p in model.parameters())
    restore_threads = _set_threads(config, n_params)
    try:
        model.to(device)
        train_data = _Tensors.make(preprocessor.transform(train_df), train_df[spec.label], device)
        val_data = _Tensors.make(preprocessor.transform(val_df), val_df[spec.label], device)
        n_train = len(train_data.label)
        if n_train == 0 or len(val_data.label) == 0:
            raise ValueError("empty training or validation frame")
        if config.batch_size % world:
            raise ValueError(f"batch_size {config.batch_size} not divisible by world {world}")
        local_batch = config.batch_size // world
        steps_per_epoch = math.ceil(math.ceil(n_train / world) / local_batch)
        limits = [config.max_steps, config.epochs and config.epochs * steps_per_epoch]
        total_steps = min(x for x in limits if x)

        optimizer = torch.optim.AdamW(
            model.parameters(),
            lr=peak_lr,
            betas=config.optimizer.betas,
            weight_decay=config.optimizer.weight_decay,
        )
        if state is not None:
            total_steps = int(state["total_steps"])
        min_share = config.schedule.min_lr_share
        warmup = config.finetune.warmup_share if fine_tuned else config.schedule.warmup_share
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: lr_factor(s, total_steps, warmup, min_share)
        )
        scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

        step = 0
        best_val = float("inf")
        bad_evals = 0
        best_state: dict[str, torch.Tensor] | None = None
        history: list[dict[str, float]] = []
        status: Status | None = None
        resumed_from: int | None = None
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler.is_enabled() and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            step = resumed_from = int(state["step"])
            best_val = float(state["best_val_loss"])
            bad_evals = int(state["bad_evals"])
            best_state = state.get("best_model") or None
            history = list(state["history"])
            if state["status"] in ("completed", "early_stopped"):
                status = state["status"]
            restore_rng_state(state["rng"])

        net: nn.Module = dist.wrap(model) if dist is not None else model
        sampler = DistributedSampler(
            _Indices(n_train), num_replicas=world, rank=rank, shuffle=True, seed=config.seed
        )
        loss_fn = nn.BCEWithLogitsLoss()

        def snapshot(current: str) -> dict[str, Any]:
            return {
                "format": STATE_FORMAT,
                "run_id": run_id,
                "status": current,
                "step": step,
                "epoch": step // steps_per_epoch,
                "total_steps": total_steps,
                "peak_lr": peak_lr,
                "fine_tuned": fine_tuned,
                "model": _clone_state(model),
                "model_meta": model_meta,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": capture_rng_state(),
                "best_val_loss": best_val,
                "bad_evals": bad_evals,
                "best_model": best_state or {},
                "history": history,
                "preprocessing": preprocessor.to_dict(),
                "config": config.model_dump(mode="json"),
            }

        last_ckpt: CheckpointInfo | None = ckpt

        def write(current: str) -> None:
            nonlocal last_ckpt
            if is_main:
                keep = config.checkpoint.keep
                last_ckpt = save_checkpoint(run_dir, snapshot(current), step, keep)
                reporter.checkpoint(step, str(last_ckpt.path))
                if on_checkpoint is not None:
                    on_checkpoint(last_ckpt)
            if dist is not None:
                dist.barrier()

        reporter.start(run_id, total_steps, step)
        steps_at_start = step
        epoch_order: torch.Tensor | None = None
        order_epoch = -1
        last_loss = float("nan")
        while status is None and step < total_steps:
            stop = stop_event is not None and stop_event.is_set()
            if dist is not None:
                stop = dist.any_flag(stop)
            if stop:
                status = "interrupted"
                break
            epoch, position = divmod(step, steps_per_epoch)
            if epoch != order_epoch:
                sampler.set_epoch(epoch)
                epoch_order = torch.tensor(list(iter(sampler)), dtype=torch.int64, device=device)
                order_epoch = epoch
            assert epoch_order is not None
            idx = epoch_order[position * local_batch : (position + 1) * local_batch]

            net.train()
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = net(train_data.numeric[idx], train_data.categorical[idx])
            loss = loss_fn(logits.float(), train_data.label[idx])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            last_loss = loss.item()
            reporter.step(step, last_loss, scheduler.get_last_lr()[0])

            if step % config.eval_every_steps == 0 or step == total_steps:
                val_loss, _ = _evaluate(model, val_data, use_amp, amp_dtype)
                if dist is not None:
                    val_loss = dist.broadcast_float(val_loss)
                history.append({"step": float(step), "val_loss": val_loss, "train_loss": last_loss})
                if val_loss < best_val - config.early_stopping.min_delta:
                    best_val, bad_evals, best_state = val_loss, 0, _clone_state(model)
                else:
                    bad_evals += 1
                reporter.evaluate(step, val_loss, best_val)
                if bad_evals >= config.early_stopping.patience:
                    status = "early_stopped"
                    break
            if step % config.checkpoint.every_steps == 0 and step < total_steps:
                write("running")
        if status is None:
            status = "completed"
        if not (resumed_from == step and ckpt is not None and state and state["status"] == status):
            write(status)

        # -- result: best weights, final metrics ------------------------------------------
        if best_state:
            model.load_state_dict(best_state)
        val_loss, scores = _evaluate(model, val_data, use_amp, amp_dtype)
        labels = val_data.label.cpu().numpy()
        metrics = {
            "val_loss": val_loss,
            "val_auc": roc_auc(labels, scores),
            "val_accuracy": float(((scores > 0) == (labels > 0.5)).mean()),
            "train_loss_last": last_loss,
            "train_rows": float(n_train),
            "val_rows": float(len(labels)),
            "steps": float(step),
        }
        model.to("cpu").eval()
        reporter.finish(status, step, best_val)
        return TrainResult(
            status=status,
            run_id=run_id,
            step=step,
            total_steps=total_steps,
            best_val_loss=best_val if best_state else val_loss,
            model=model,
            preprocessor=preprocessor,
            config=config,
            checkpoint=last_ckpt,
            resumed_from_step=resumed_from,
            fine_tuned=fine_tuned,
            history=history,
            metrics=metrics,
            duration_s=time.perf_counter() - started,
            steps_run=step - steps_at_start,
        )
    finally:
        if restore_threads is not None:
            torch.set_num_threads(restore_threads)
