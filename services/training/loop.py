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


# -- stages ------------------------------------------------------------------------------
@dataclass
class _Origin:
    """Where a run starts (resume > fine-tune > scratch): its settings, preprocessing and
    model, and the checkpoint it resumes from."""

    config: TrainingConfig
    run_id: str
    preprocessor: Preprocessor
    model: TabularModel
    model_meta: dict[str, Any]
    fine_tuned: bool
    peak_lr: float
    state: dict[str, Any] | None
    checkpoint: CheckpointInfo | None


@dataclass(frozen=True)
class _Plan:
    """How the steps are laid out over the training rows."""

    local_batch: int
    steps_per_epoch: int
    total_steps: int


@dataclass
class _Optimization:
    """AdamW, the warm-up + cosine schedule and the (float16-only) gradient scaler."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler


@dataclass
class _Progress:
    """What the fit loop has done so far (all of it goes into checkpoints)."""

    step: int = 0
    best_val: float = float("inf")
    bad_evals: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    status: Status | None = None
    resumed_from: int | None = None
    last_loss: float = float("nan")


@dataclass
class _Run:
    """One call's working set, handed from stage to stage."""

    config: TrainingConfig
    origin: _Origin
    plan: _Plan
    device: torch.device
    use_amp: bool
    amp_dtype: torch.dtype
    train_data: _Tensors
    val_data: _Tensors
    optimization: _Optimization
    progress: _Progress
    reporter: ProgressReporter
    dist: DistContext | None


def _read_checkpoint(
    run_dir: Path, resume: bool, dist: DistContext | None
) -> tuple[CheckpointInfo | None, dict[str, Any] | None]:
    """The newest checkpoint of ``run_dir`` (when resuming) and its verified state."""
    ckpt = latest_checkpoint(run_dir) if resume else None
    state: dict[str, Any] | None = load_checkpoint(ckpt) if ckpt is not None else None
    if dist is not None:
        dist.barrier()  # nobody writes before every rank has read
    if state is not None and state.get("format") != STATE_FORMAT:
        raise ValueError(f"checkpoint {ckpt} has unsupported format {state.get('format')}")
    return ckpt, state


def _fit_preprocessing(
    spec: ModelSpec, train_df: pd.DataFrame, init_from: ParentModel | None
) -> Preprocessor:
    """Fit on the training part; when fine-tuning, the parent's with new categories added."""
    if init_from is None:
        return Preprocessor.fit(spec, train_df)
    parent = Preprocessor.from_dict(dict(init_from.preprocessing))
    parent.check_spec(spec)
    return parent.extend_vocabularies(train_df)


def _build_model(
    config: TrainingConfig, preprocessor: Preprocessor, init_from: ParentModel | None
) -> TabularModel:
    """A fresh model for the inputs, or the parent's with its embeddings grown to them."""
    if init_from is None:
        return build_module(preprocessor.schema, config.architecture)  # type: ignore[return-value]
    weights, model_meta = grow_embeddings(
        dict(init_from.state_dict), dict(init_from.model_meta), preprocessor.cardinalities
    )
    model = module_from_meta(model_meta)
    model.load_state_dict(weights)
    return model


def _origin(
    run_dir: Path,
    spec: ModelSpec,
    train_df: pd.DataFrame,
    config: TrainingConfig,
    init_from: ParentModel | None,
    resume: bool,
    run_id: str | None,
    dist: DistContext | None,
) -> _Origin:
    """Resume from the checkpoint (its config and preprocessing), else fine-tune or start."""
    ckpt, state = _read_checkpoint(run_dir, resume, dist)
    if state is not None:
        preprocessor = Preprocessor.from_dict(state["preprocessing"])
        preprocessor.check_spec(spec)
        model_meta = state["model_meta"]
        return _Origin(
            TrainingConfig.model_validate(state["config"]), str(state["run_id"]), preprocessor,
            module_from_meta(model_meta), model_meta, bool(state["fine_tuned"]),
            float(state["peak_lr"]), state, ckpt,
        )
    run_id = run_id or uuid.uuid4().hex
    seed_everything(config.seed)
    preprocessor = _fit_preprocessing(spec, train_df, init_from)
    model = _build_model(config, preprocessor, init_from)
    fine_tuned = init_from is not None
    peak_lr = config.optimizer.lr * config.finetune.lr_scale if fine_tuned else config.optimizer.lr
    return _Origin(config, run_id, preprocessor, model, model.meta, fine_tuned, peak_lr,
                   None, ckpt)


def _prepare_data(
    spec: ModelSpec, preprocessor: Preprocessor, train_df: pd.DataFrame, val_df: pd.DataFrame,
    device: torch.device,
) -> tuple[_Tensors, _Tensors]:
    """Encode both parts into tensors on ``device``; neither may be empty."""
    train_data = _Tensors.make(preprocessor.transform(train_df), train_df[spec.label], device)
    val_data = _Tensors.make(preprocessor.transform(val_df), val_df[spec.label], device)
    if len(train_data.label) == 0 or len(val_data.label) == 0:
        raise ValueError("empty training or validation frame")
    return train_data, val_data


def _plan(config: TrainingConfig, n_train: int, world: int, state: dict[str, Any] | None) -> _Plan:
    """Batch per rank, steps per epoch and the run's length (a resumed run keeps its own)."""
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} not divisible by world {world}")
    local_batch = config.batch_size // world
    steps_per_epoch = math.ceil(math.ceil(n_train / world) / local_batch)
    limits = [config.max_steps, config.epochs and config.epochs * steps_per_epoch]
    total_steps = min(x for x in limits if x)
    if state is not None:
        total_steps = int(state["total_steps"])
    return _Plan(local_batch, steps_per_epoch, total_steps)


def _optimization(
    model: nn.Module, config: TrainingConfig, origin: _Origin, total_steps: int,
    device: torch.device, use_amp: bool, amp_dtype: torch.dtype,
) -> _Optimization:
    """AdamW at the run's peak rate, warm-up (shorter when fine-tuning) then cosine decay."""
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=origin.peak_lr,
        betas=config.optimizer.betas,
        weight_decay=config.optimizer.weight_decay,
    )
    min_share = config.schedule.min_lr_share
    warmup = config.finetune.warmup_share if origin.fine_tuned else config.schedule.warmup_share
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, min_share)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    return _Optimization(optimizer, scheduler, scaler)


def _restore_progress(
    state: dict[str, Any] | None, model: nn.Module, opt: _Optimization
) -> _Progress:
    """A resumed run's weights, optimizer, schedule, counters and RNG states; else a start."""
    progress = _Progress()
    if state is None:
        return progress
    model.load_state_dict(state["model"])
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    if opt.scaler.is_enabled() and state.get("scaler"):
        opt.scaler.load_state_dict(state["scaler"])
    progress.step = progress.resumed_from = int(state["step"])
    progress.best_val = float(state["best_val_loss"])
    progress.bad_evals = int(state["bad_evals"])
    progress.best_state = state.get("best_model") or None
    progress.history = list(state["history"])
    if state["status"] in ("completed", "early_stopped"):
        progress.status = state["status"]
    restore_rng_state(state["rng"])
    return progress


class _Checkpointer:
    """Writes the run's full state (main rank only; every rank waits for it)."""

    def __init__(
        self, run: _Run, run_dir: Path, is_main: bool,
        on_checkpoint: Callable[[CheckpointInfo], None] | None,
    ) -> None:
        self.run = run
        self.run_dir = run_dir
        self.is_main = is_main
        self.on_checkpoint = on_checkpoint
        self.last: CheckpointInfo | None = run.origin.checkpoint

    def state(self, status: str) -> dict[str, Any]:
        """Everything a resumed run needs to continue identically."""
        run, origin, p, opt = self.run, self.run.origin, self.run.progress, self.run.optimization
        return {
            "format": STATE_FORMAT,
            "run_id": origin.run_id,
            "status": status,
            "step": p.step,
            "epoch": p.step // run.plan.steps_per_epoch,
            "total_steps": run.plan.total_steps,
            "peak_lr": origin.peak_lr,
            "fine_tuned": origin.fine_tuned,
            "model": _clone_state(origin.model),
            "model_meta": origin.model_meta,
            "optimizer": opt.optimizer.state_dict(),
            "scheduler": opt.scheduler.state_dict(),
            "scaler": opt.scaler.state_dict(),
            "rng": capture_rng_state(),
            "best_val_loss": p.best_val,
            "bad_evals": p.bad_evals,
            "best_model": p.best_state or {},
            "history": p.history,
            "preprocessing": origin.preprocessor.to_dict(),
            "config": run.config.model_dump(mode="json"),
        }

    def write(self, status: str) -> None:
        """Save a checkpoint with ``status`` (keeping the newest ``checkpoint.keep``)."""
        run = self.run
        if self.is_main:
            keep = run.config.checkpoint.keep
            self.last = save_checkpoint(self.run_dir, self.state(status), run.progress.step, keep)
            run.reporter.checkpoint(run.progress.step, str(self.last.path))
            if self.on_checkpoint is not None:
                self.on_checkpoint(self.last)
        if run.dist is not None:
            run.dist.barrier()


def _fit(
    run: _Run, net: nn.Module, sampler: DistributedSampler, checkpointer: _Checkpointer,
    stop_event: threading.Event | None,
) -> None:
    """Optimizer steps until the plan's end, early stopping or a stop request; validates
    every ``eval_every_steps`` and checkpoints every ``checkpoint.every_steps``."""
    config, plan, p, opt = run.config, run.plan, run.progress, run.optimization
    model, data, dist = run.origin.model, run.train_data, run.dist
    loss_fn = nn.BCEWithLogitsLoss()
    epoch_order: torch.Tensor | None = None
    order_epoch = -1
    while p.status is None and p.step < plan.total_steps:
        stop = stop_event is not None and stop_event.is_set()
        if dist is not None:
            stop = dist.any_flag(stop)
        if stop:
            p.status = "interrupted"
            break
        epoch, position = divmod(p.step, plan.steps_per_epoch)
        if epoch != order_epoch:
            sampler.set_epoch(epoch)
            epoch_order = torch.tensor(list(iter(sampler)), dtype=torch.int64, device=run.device)
            order_epoch = epoch
        assert epoch_order is not None
        idx = epoch_order[position * plan.local_batch : (position + 1) * plan.local_batch]

        net.train()
        with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.use_amp):
            logits = net(data.numeric[idx], data.categorical[idx])
        loss = loss_fn(logits.float(), data.label[idx])
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(loss).backward()
        opt.scaler.unscale_(opt.optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        opt.scheduler.step()
        p.step += 1
        p.last_loss = loss.item()
        run.reporter.step(p.step, p.last_loss, opt.scheduler.get_last_lr()[0])

        due = p.step % config.eval_every_steps == 0 or p.step == plan.total_steps
        if due and _validate(run):
            p.status = "early_stopped"
            break
        if p.step % config.checkpoint.every_steps == 0 and p.step < plan.total_steps:
            checkpointer.write("running")
    if p.status is None:
        p.status = "completed"


def _validate(run: _Run) -> bool:
    """One validation pass: record it, keep the best weights; True when patience ran out."""
    p, config = run.progress, run.config
    val_loss, _ = _evaluate(run.origin.model, run.val_data, run.use_amp, run.amp_dtype)
    if run.dist is not None:
        val_loss = run.dist.broadcast_float(val_loss)
    p.history.append({"step": float(p.step), "val_loss": val_loss, "train_loss": p.last_loss})
    if val_loss < p.best_val - config.early_stopping.min_delta:
        p.best_val, p.bad_evals, p.best_state = val_loss, 0, _clone_state(run.origin.model)
    else:
        p.bad_evals += 1
    run.reporter.evaluate(p.step, val_loss, p.best_val)
    return p.bad_evals >= config.early_stopping.patience


def _final_metrics(run: _Run) -> tuple[float, dict[str, float]]:
    """Load the best weights and measure them on the validation part."""
    p, model = run.progress, run.origin.model
    if p.best_state:
        model.load_state_dict(p.best_state)
    val_loss, scores = _evaluate(model, run.val_data, run.use_amp, run.amp_dtype)
    labels = run.val_data.label.cpu().numpy()
    return val_loss, {
        "val_loss": val_loss,
        "val_auc": roc_auc(labels, scores),
        "val_accuracy": float(((scores > 0) == (labels > 0.5)).mean()),
        "train_loss_last": p.last_loss,
        "train_rows": float(len(run.train_data.label)),
        "val_rows": float(len(labels)),
        "steps": float(p.step),
    }


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
    """Train (or fine-tune, or resume) a model; see the module docstring.

    Stages: where the run starts (:func:`_origin`: checkpoint, preprocessing fit, model
    build), data (:func:`_prepare_data`, :func:`_plan`), optimizer and restored progress,
    the fit loop (:func:`_fit`) with its checkpoints, the final checkpoint and evaluation.
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    is_main = dist is None or dist.is_main
    world = dist.world_size if dist is not None else 1
    rank = dist.rank if dist is not None else 0
    if progress == "auto":
        progress = auto_progress() if is_main else NullProgress()
    reporter: ProgressReporter = progress or NullProgress()

    origin = _origin(run_dir, spec, train_df, config, init_from, resume, run_id, dist)
    config, model, state = origin.config, origin.model, origin.state
    device = dist.device if dist is not None else pick_device(config.device)
    use_amp, amp_dtype = amp_settings(device)
    n_params = sum(p.numel() for p in model.parameters())
    restore_threads = _set_threads(config, n_params)
    try:
        model.to(device)
        train_data, val_data = _prepare_data(spec, origin.preprocessor, train_df, val_df, device)
        n_train = len(train_data.label)
        plan = _plan(config, n_train, world, state)
        optimization = _optimization(model, config, origin, plan.total_steps, device, use_amp,
                                     amp_dtype)
        run = _Run(config, origin, plan, device, use_amp, amp_dtype, train_data, val_data,
                   optimization, _restore_progress(state, model, optimization), reporter, dist)
        net: nn.Module = dist.wrap(model) if dist is not None else model
        sampler = DistributedSampler(
            _Indices(n_train), num_replicas=world, rank=rank, shuffle=True, seed=config.seed
        )
        checkpointer = _Checkpointer(run, run_dir, is_main, on_checkpoint)

        p = run.progress
        reporter.start(origin.run_id, plan.total_steps, p.step)
        steps_at_start = p.step
        _fit(run, net, sampler, checkpointer, stop_event)
        assert p.status is not None
        resumed_done = origin.checkpoint is not None and state and state["status"] == p.status
        if not (p.resumed_from == p.step and resumed_done):
            checkpointer.write(p.status)

        val_loss, metrics = _final_metrics(run)
        model.to("cpu").eval()
        reporter.finish(p.status, p.step, p.best_val)
        return TrainResult(
            status=p.status,
            run_id=origin.run_id,
            step=p.step,
            total_steps=plan.total_steps,
            best_val_loss=p.best_val if p.best_state else val_loss,
            model=model,
            preprocessor=origin.preprocessor,
            config=config,
            checkpoint=checkpointer.last,
            resumed_from_step=p.resumed_from,
            fine_tuned=origin.fine_tuned,
            history=p.history,
            metrics=metrics,
            duration_s=time.perf_counter() - started,
            steps_run=p.step - steps_at_start,
        )
    finally:
        if restore_threads is not None:
            torch.set_num_threads(restore_threads)
