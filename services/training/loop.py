"""The training loop: resumable, deterministic, early-stopped (fine-)tuning of a model.

What one call to ``train`` does:

- Builds the model for the run's task (:class:`~services.model.task.Task`): the
  built-in tabular MLP, or the user's factory (``factory``, see
  :mod:`services.model.builder`). Labels are checked against the task first; a label
  that does not fit is a :class:`~services.model.task.LabelError` naming the label
  column and the value, before anything is trained.
- AdamW, a LambdaLR schedule (linear warm-up over ``warmup_share`` of the steps, then
  cosine decay to ``min_lr_share`` of the peak), gradient clipping, the task's loss
  (:mod:`services.training.objective`: BCE-with-logits, cross-entropy, or MSE on
  standardised targets), validation every ``eval_every_steps`` with early stopping on
  validation loss (log loss, cross-entropy, or MSE in label units); the best weights
  are the result, measured with the task's validation metrics.
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
category; a factory model gets the same growth when its weights allow it
(:func:`~services.model.builder.grow_factory`), else it keeps the parent's vocabularies
and new categories are scored as unknown. A regression parent's target scale is kept for
the same reason as its numeric scaling. The architecture stays the parent's (a factory
parent is rebuilt by its factory and given the parent's weights); a parent of another
task or another factory is refused (``ValueError``). The peak learning rate is scaled by
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
from services.model.builder import (
    BuiltModel,
    ModelSchema,
    build_model,
    grow_factory,
    is_factory_meta,
    load_weights,
    meta_outputs,
    module_from_meta,
    rebuild_factory,
)
from services.model.preprocessing import EncodedFrame, Preprocessor, TargetScale
from services.model.tabular import grow_embeddings
from services.model.task import Task
from services.training.checkpoint import (
    CheckpointInfo,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from services.training.config import TrainingConfig
from services.training.objective import (
    loss,
    roc_auc,
    training_targets,
    validation_loss_factor,
    validation_metrics,
)
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

    @property
    def task(self) -> Task: ...


@dataclass
class TrainResult:
    """Outcome of ``train``: the best weights and how the run went."""

    status: Status
    run_id: str
    step: int
    total_steps: int
    best_val_loss: float
    model: nn.Module
    architecture: dict[str, Any]
    preprocessor: Preprocessor
    config: TrainingConfig
    checkpoint: CheckpointInfo | None
    resumed_from_step: int | None
    fine_tuned: bool
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    steps_run: int = 0
    task: Task = field(default_factory=Task)

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
        """Architecture description (``services.model.builder.module_from_meta`` rebuilds it)."""
        return dict(self.architecture)

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


__all__ = ["ParentModel", "TrainResult", "lr_factor", "roc_auc", "train"]


@dataclass
class _Tensors:
    """Encoded inputs and the task's training targets (``label``), on the run's device."""

    numeric: torch.Tensor
    categorical: torch.Tensor
    label: torch.Tensor

    @classmethod
    def make(cls, enc: EncodedFrame, labels: pd.Series, task: Task,
             scale: TargetScale | None, device: torch.device) -> _Tensors:
        y = pd.to_numeric(labels, errors="coerce").to_numpy(np.float64)
        return cls(
            torch.from_numpy(enc.numeric).to(device),
            torch.from_numpy(enc.categorical).to(device),
            training_targets(task, y, scale).to(device),
        )


def _evaluate(
    model: nn.Module, data: _Tensors, task: Task, scale: TargetScale | None, use_amp: bool,
    amp_dtype: torch.dtype, chunk: int = 8192,
) -> tuple[float, np.ndarray]:
    """Validation loss (the task's, in label units for regression) and the raw outputs."""
    model.eval()
    total = 0.0
    outputs = []
    with torch.no_grad():
        for lo in range(0, len(data.label), chunk):
            sl = slice(lo, lo + chunk)
            with torch.autocast(data.label.device.type, dtype=amp_dtype, enabled=use_amp):
                out = model(data.numeric[sl], data.categorical[sl])
            out = out.float()
            total += loss(task, out, data.label[sl], reduction="sum").item()
            outputs.append(out.cpu().numpy())
    n = max(len(data.label), 1)
    val_loss = total / n * validation_loss_factor(task, scale)
    return val_loss, np.concatenate(outputs) if outputs else np.zeros(0)


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
    task: Task
    preprocessor: Preprocessor
    model: nn.Module
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


def _check_labels(spec: ModelSpec, task: Task, *frames: pd.DataFrame) -> None:
    """Every label of the run fits the task (:class:`LabelError` naming column and value)."""
    for frame in frames:
        if spec.label not in frame:
            raise ValueError(f"training frame has no label column {spec.label!r}")
        task.check_labels(frame[spec.label].to_numpy(), field=spec.label)


def _fit_preprocessing(
    spec: ModelSpec, train_df: pd.DataFrame, init_from: ParentModel | None, task: Task
) -> Preprocessor:
    """Fit on the training part; when fine-tuning, the parent's with new categories
    appended. Regression adds the target scale (kept from the parent)."""
    if init_from is None:
        pre = Preprocessor.fit(spec, train_df)
    else:
        pre = Preprocessor.from_dict(dict(init_from.preprocessing))
        pre.check_spec(spec)
        pre = pre.extend_vocabularies(train_df)
    if task.kind != "regression":
        return pre.with_target(None)
    if pre.target is not None:
        return pre
    labels = pd.to_numeric(train_df[spec.label], errors="coerce").to_numpy(np.float64)
    return pre.with_target(TargetScale.fit(labels))


def _check_parent(init_from: ParentModel, task: Task, factory: str | None) -> None:
    """Refuse a parent that cannot be fine-tuned into this run's task and model."""
    meta = dict(init_from.model_meta)
    parent_task = init_from.task
    if parent_task != task:
        raise ValueError(f"the parent was trained for {parent_task.to_dict()}, this model's "
                         f"task is {task.to_dict()}: train from scratch")
    parent_factory = meta.get("factory") if is_factory_meta(meta) else None
    if parent_factory != factory:
        raise ValueError(f"the parent was built by {parent_factory or 'the built-in model'}, "
                         f"this model's factory is {factory or 'the built-in model'}: "
                         "train from scratch")
    if meta_outputs(meta) != task.n_outputs:
        raise ValueError(f"the parent has {meta_outputs(meta)} outputs, the task needs "
                         f"{task.n_outputs}: train from scratch")


def _build_model(
    config: TrainingConfig, preprocessor: Preprocessor, init_from: ParentModel | None,
    task: Task, factory: str | None,
) -> tuple[BuiltModel, Preprocessor]:
    """A fresh model for the inputs, or the parent's with its embeddings grown to the
    inputs: the built-in one, or a factory one rebuilt by its factory (one that cannot
    grow keeps the parent's schema, and the preprocessing returned keeps its vocabularies)."""
    if init_from is None:
        schema = ModelSchema.of(preprocessor, task)
        return build_model(schema, config.architecture, factory), preprocessor
    _check_parent(init_from, task, factory)
    parent_meta = dict(init_from.model_meta)
    if is_factory_meta(parent_meta):
        vocabularies = ModelSchema.of(preprocessor, task).vocabularies
        grown = grow_factory(parent_meta, init_from.state_dict, vocabularies)
        if grown is not None:
            return grown, preprocessor
        built = rebuild_factory(parent_meta)
        load_weights(built.module, parent_meta, init_from.state_dict)
        parent_pre = Preprocessor.from_dict(dict(init_from.preprocessing))
        return built, parent_pre.with_target(preprocessor.target)
    weights, model_meta = grow_embeddings(
        dict(init_from.state_dict), parent_meta, preprocessor.cardinalities
    )
    model = module_from_meta(model_meta)
    model.load_state_dict(weights)
    return BuiltModel(model, model_meta), preprocessor


def _origin(
    run_dir: Path,
    spec: ModelSpec,
    train_df: pd.DataFrame,
    config: TrainingConfig,
    init_from: ParentModel | None,
    resume: bool,
    run_id: str | None,
    dist: DistContext | None,
    task: Task,
    factory: str | None,
) -> _Origin:
    """Resume from the checkpoint (its config, task and preprocessing), else fine-tune or
    start."""
    ckpt, state = _read_checkpoint(run_dir, resume, dist)
    if state is not None:
        preprocessor = Preprocessor.from_dict(state["preprocessing"])
        preprocessor.check_spec(spec)
        model_meta = state["model_meta"]
        return _Origin(
            TrainingConfig.model_validate(state["config"]), str(state["run_id"]),
            Task.model_validate(state["task"]), preprocessor,
            module_from_meta(model_meta), model_meta, bool(state["fine_tuned"]),
            float(state["peak_lr"]), state, ckpt,
        )
    run_id = run_id or uuid.uuid4().hex
    seed_everything(config.seed)
    preprocessor = _fit_preprocessing(spec, train_df, init_from, task)
    built, preprocessor = _build_model(config, preprocessor, init_from, task, factory)
    fine_tuned = init_from is not None
    peak_lr = config.optimizer.lr * config.finetune.lr_scale if fine_tuned else config.optimizer.lr
    return _Origin(config, run_id, task, preprocessor, built.module, built.meta, fine_tuned,
                   peak_lr, None, ckpt)


def _prepare_data(
    spec: ModelSpec, origin: _Origin, train_df: pd.DataFrame, val_df: pd.DataFrame,
    device: torch.device,
) -> tuple[_Tensors, _Tensors]:
    """Encode both parts into tensors on ``device``; neither may be empty."""
    pre, task = origin.preprocessor, origin.task
    train_data = _Tensors.make(pre.transform(train_df), train_df[spec.label], task, pre.target,
                               device)
    val_data = _Tensors.make(pre.transform(val_df), val_df[spec.label], task, pre.target,
                             device)
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
            "task": origin.task.to_dict(),
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
    model, data, dist, task = run.origin.model, run.train_data, run.dist, run.origin.task
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
            outputs = net(data.numeric[idx], data.categorical[idx])
        step_loss = loss(task, outputs, data.label[idx])
        opt.optimizer.zero_grad(set_to_none=True)
        opt.scaler.scale(step_loss).backward()
        opt.scaler.unscale_(opt.optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.scaler.step(opt.optimizer)
        opt.scaler.update()
        opt.scheduler.step()
        p.step += 1
        p.last_loss = step_loss.item()
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
    origin = run.origin
    val_loss, _ = _evaluate(origin.model, run.val_data, origin.task, origin.preprocessor.target,
                            run.use_amp, run.amp_dtype)
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
    """Load the best weights and measure them on the validation part (the task's metrics)."""
    p, origin = run.progress, run.origin
    model, task, scale = origin.model, origin.task, origin.preprocessor.target
    if p.best_state:
        model.load_state_dict(p.best_state)
    val_loss, outputs = _evaluate(model, run.val_data, task, scale, run.use_amp, run.amp_dtype)
    targets = run.val_data.label.cpu().numpy()
    return val_loss, {
        **validation_metrics(task, outputs, targets, scale, val_loss),
        "train_loss_last": p.last_loss,
        "train_rows": float(len(run.train_data.label)),
        "val_rows": float(len(targets)),
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
    task: Task | None = None,
    factory: str | None = None,
) -> TrainResult:
    """Train (or fine-tune, or resume) a model for ``task`` (default binary) with the
    built-in model or ``factory`` (``package.module:function``); see the module docstring.

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

    task = task if task is not None else Task()
    _check_labels(spec, task, train_df, val_df)
    origin = _origin(run_dir, spec, train_df, config, init_from, resume, run_id, dist, task,
                     factory)
    config, model, state = origin.config, origin.model, origin.state
    device = dist.device if dist is not None else pick_device(config.device)
    use_amp, amp_dtype = amp_settings(device)
    n_params = sum(p.numel() for p in model.parameters())
    restore_threads = _set_threads(config, n_params)
    try:
        model.to(device)
        train_data, val_data = _prepare_data(spec, origin, train_df, val_df, device)
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
            architecture=origin.model_meta,
            preprocessor=origin.preprocessor,
            config=config,
            checkpoint=checkpointer.last,
            resumed_from_step=p.resumed_from,
            fine_tuned=origin.fine_tuned,
            history=p.history,
            metrics=metrics,
            duration_s=time.perf_counter() - started,
            steps_run=p.step - steps_at_start,
            task=origin.task,
        )
    finally:
        if restore_threads is not None:
            torch.set_num_threads(restore_threads)
