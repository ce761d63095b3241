"""The one training loop: pretraining and fine-tuning differ only in the batch source and the model."""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gptkit.compiling import CompiledOrEager
from gptkit.config import GPT4Config
from gptkit.data.shards import DataError
from gptkit.errors import ConfigError, GPTKitError
from gptkit.modeling import GPT4LMHeadModel
from gptkit.train import checkpoint as ckpt
from gptkit.train import distributed as dist_
from gptkit.train.config import TrainConfig
from gptkit.train.data import BatchSource, PretrainBatches, label_kind
from gptkit.train.metrics import batch_flops, bits_per_byte, measured_peak_flops
from gptkit.train.optim import lr_at, make_optimizer, set_lr
from gptkit.train.progress import Throughput, TrainResult, bytes_per_token_of, open_logger, summary


class TrainingDivergedError(GPTKitError, FloatingPointError):
    """The loss became NaN or infinite; training stopped and the last good checkpoint was kept."""


def train(
    config: TrainConfig | dict[str, Any],
    *,
    model: nn.Module | None = None,
    source: BatchSource | None = None,
    tokenizer: Any = None,
) -> TrainResult:
    """Train ``config.model`` (or ``model``) on ``config.data_dir`` (or ``source``); see TrainConfig."""
    config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    d = dist_.setup(config.distributed, config.device)
    try:
        return Trainer(config, d, model, source, tokenizer).run()
    finally:
        dist_.teardown(d)


class Trainer:
    """State of one run; ``run()`` is the loop."""

    def __init__(self, config: TrainConfig, d: dist_.Dist, model, source, tokenizer) -> None:
        self.config, self.d = config, d
        self.grad_accum = config.accumulation(d.world_size)
        _seed_everything(config.seed)
        self.model = model if model is not None else build_model(config)
        self.model_config: GPT4Config = self.model.config
        self.block_size = config.block_size or self.model_config.context_length
        if self.block_size > self.model_config.context_length:
            raise ConfigError(
                f"block_size={self.block_size} exceeds the model's context_length={self.model_config.context_length}"
            )
        self.source = source if source is not None else self._pretrain_source()
        _check_vocab(self.source, self.model_config)
        self.tokenizer = tokenizer if tokenizer is not None else _shard_tokenizer(config.data_dir)
        self.out_dir = Path(config.out_dir)
        self.step, self.best_val_loss, self.tokens_seen = 0, math.inf, 0
        self.model.to(device=d.device, dtype=torch.float32).train()
        resumed = self._load_checkpoint() if config.resume else None
        self.wrapped = dist_.wrap(self.model, d)
        self.optimizer = make_optimizer(self.model, config, d.device)
        if resumed is not None:
            dist_.load_full_state(self.model, self.optimizer, resumed.model, resumed.optimizer)
        self.forward = CompiledForward(self.wrapped, config.compile, label_kind(self.source))
        self.autocast_dtype = torch.bfloat16 if config.dtype == "bfloat16" else None
        self.step_tokens, self.step_flops = 0, 0.0  # real (unpadded) work of the last step, all ranks

    # ---- setup ------------------------------------------------------------------------------------
    def _pretrain_source(self) -> PretrainBatches:
        c = self.config
        d = self.d
        return PretrainBatches.open(
            c.data_dir, c.batch_size, self.block_size, c.seed, d.rank, d.world_size, self.grad_accum
        )

    def _load_checkpoint(self) -> ckpt.Checkpoint:
        """Restore step, data position, RNG and weights from the newest valid checkpoint in out_dir."""
        found = ckpt.latest_checkpoint(self.out_dir)
        ckpt.check_model_config(found.config["model"], self.model_config)
        self.model.load_state_dict(found.model, strict=False)
        self.step = found.step
        self.best_val_loss = found.state.get("best_val_loss", math.inf)
        self.tokens_seen = found.state.get("tokens_seen", 0)
        self.source.load_state_dict(found.state["data"])
        _check_global_batch(found.state["data"], self.source)
        ckpt.restore_rng(found.rng, found.state["rng"])
        if self.d.is_main:
            print(f"resuming from {found.path} (step {found.step})")
        return found

    # ---- the loop ---------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Step until max_iters, evaluating, logging, sampling and checkpointing on their intervals."""
        c, main = self.config, self.d.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if c.progress:
                print(f"writing checkpoints and metrics to {self.out_dir}/", flush=True)
        dist_.barrier(self.d)
        logger = open_logger(c, self.out_dir, self.step) if main else None
        peak = measured_peak_flops(self.d.device, self.autocast_dtype or torch.float32) if main else 0.0
        bytes_per_token = bytes_per_token_of(self.source, self.tokenizer)
        result = TrainResult(self.out_dir, self.step, self.step, [], best_val_loss=self.best_val_loss)
        bar = tqdm(total=c.max_iters, initial=self.step, disable=not (main and c.progress), desc="train")
        meter = Throughput(peak * self.d.world_size)
        try:
            while self.step < c.max_iters:
                self._run_step(result, meter, bar, logger, bytes_per_token)
        finally:
            bar.close()
            result.wall_time = meter.elapsed()
            if logger is not None:
                if logger.rows:
                    result.plot = logger.plot(self.out_dir / "loss.png")
                logger.close()
        result.final_step, result.best_val_loss = self.step, self.best_val_loss
        result.tokens_per_s = result.tokens / max(result.wall_time, 1e-9)
        result.mfu = meter.overall_mfu(result.wall_time)
        result.model = self.model
        if main and c.progress:
            print(summary(result))
        return result

    def _run_step(self, result: TrainResult, meter: Throughput, bar, logger, bytes_per_token) -> None:
        """One optimizer step, then whatever falls due at it: evaluation, a log row, a sample, a checkpoint."""
        c = self.config
        lr = lr_at(self.step, c)
        set_lr(self.optimizer, lr)
        step_start = time.perf_counter()
        loss = self.train_step()
        result.train_seconds += time.perf_counter() - step_start
        self.step += 1
        self._check_finite(loss, lr)
        result.losses.append(loss)
        self.tokens_seen += self.step_tokens
        result.tokens += self.step_tokens
        meter.add(self.step_tokens, self.step_flops)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        row: dict[str, Any] = {}
        if self._due(c.eval_interval):
            row.update(self._evaluate(bytes_per_token, result))
        if self._due(c.log_interval) or row:
            row.update(step=self.step, loss=loss, lr=lr, **meter.window(), tokens=self.tokens_seen)
            if logger is not None:
                logger.log(row)
        if c.sample_interval and self._due(c.sample_interval):
            self._sample(bar)
        if self._due(c.checkpoint_interval or c.max_iters):
            result.checkpoint = self.save()

    def _due(self, interval: int) -> bool:
        return self.step % interval == 0 or self.step == self.config.max_iters

    def train_step(self) -> float:
        """One optimizer step over grad_accum micro-batches; returns the mean loss over all ranks."""
        c = self.config
        total = torch.zeros((), device=self.d.device)
        work = torch.zeros(2, dtype=torch.float64, device=self.d.device)  # real tokens, their FLOPs
        for micro in range(self.grad_accum):
            input_ids, labels = (
                t.to(self.d.device, non_blocking=True) for t in self.source.next_batch()
            )  # (B, T)
            lengths = getattr(self.source, "last_lengths", None) or [input_ids.shape[1]] * input_ids.shape[0]
            work += torch.tensor(
                [sum(lengths), batch_flops(self.model_config, lengths)],
                dtype=torch.float64,
                device=work.device,
            )
            with dist_.no_sync(self.wrapped, micro == self.grad_accum - 1):
                with self._autocast():
                    loss = self.forward(input_ids, labels)
                (loss / self.grad_accum).backward()
            total += loss.detach()
        if c.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        work = dist_.mean_across_ranks(work, self.d) * self.d.world_size  # summed over ranks
        self.step_tokens, self.step_flops = int(work[0]), float(work[1])
        return float(dist_.mean_across_ranks(total / self.grad_accum, self.d))

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.d.device.type, dtype=self.autocast_dtype)

    def _check_finite(self, loss: float, lr: float) -> None:
        """Stop with TrainingDivergedError on a NaN/inf loss; checkpoints already written stay untouched."""
        if math.isfinite(loss):
            return
        last = ckpt.list_checkpoints(self.out_dir)
        kept = f"the last good checkpoint is {last[-1]}" if last else "no checkpoint was written yet"
        raise TrainingDivergedError(
            f"loss became {loss} at step {self.step} (lr={lr:.3g}); stopped training, {kept}. "
            "Lower the learning rate or check the data."
        )

    @torch.no_grad()
    def _evaluate(self, bytes_per_token: float | None, result: TrainResult) -> dict[str, Any]:
        """Mean validation loss over eval_iters batches (and bits per byte when bytes are known)."""
        self.model.eval()
        losses = []
        for input_ids, labels in self.source.eval_batches(self.config.eval_iters):
            with self._autocast():
                kind = {label_kind(self.source): labels.to(self.d.device)}
                losses.append(self.model(input_ids.to(self.d.device), **kind).loss)
        self.model.train()
        val = float(dist_.mean_across_ranks(torch.stack(losses).mean(), self.d))
        result.val_losses[self.step] = val
        result.val_train_seconds[self.step] = result.train_seconds
        self.best_val_loss = min(self.best_val_loss, val)
        result.val_bpb = bits_per_byte(val, bytes_per_token)
        return {"val_loss": val, "val_bpb": result.val_bpb}

    @torch.no_grad()
    def _sample(self, bar) -> None:
        """Print a sampled continuation of sample_prompt (a private generator: training RNG untouched)."""
        if self.tokenizer is None:
            return
        c = self.config
        prompt = self.tokenizer.encode(c.sample_prompt, return_tensors="pt").to(self.d.device)
        gen = torch.Generator(device=self.d.device).manual_seed(c.seed + self.step)
        self.model.eval()
        limit = min(c.sample_tokens, self.model_config.context_length - prompt.shape[1])
        out = self.model.generate(
            prompt, max_new_tokens=max(limit, 1), do_sample=True, top_k=200, generator=gen
        )
        self.model.train()
        if self.d.is_main:
            bar.write(f"--- sample at step {self.step} ---\n{self.tokenizer.decode(out[0])}\n---")

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (rank 0 writes; every rank joins the state gathering)."""
        params = dist_.full_model_state(self.wrapped)
        optim = dist_.full_optimizer_state(self.wrapped, self.optimizer)
        path = None
        if self.d.is_main:
            rng_tensors, rng_scalars = ckpt.capture_rng()
            state = {
                "best_val_loss": self.best_val_loss,
                "tokens_seen": self.tokens_seen,
                "data": self.source.state_dict(),
                "rng": rng_scalars,
            }
            config = {
                "model": self.model_config.to_dict(),
                "train": self.config.to_dict(),
                "tokenizer": _tokenizer_source(self.config),
            }
            record = ckpt.Checkpoint(self.step, params, optim, state, config, rng_tensors)
            path = ckpt.save_checkpoint(self.out_dir, record, self.config.keep_last)
        dist_.barrier(self.d)
        return path


class CompiledForward:
    """``model(x, labels=y).loss`` (or ``targets=y``), through torch.compile when asked, else eager."""

    def __init__(self, model: nn.Module, compile: bool, kind: str = "labels") -> None:
        compiled = torch.compile(model) if compile else None
        self.model = CompiledOrEager(compiled, model, "the training forward", warnings.warn)
        self.kind = kind

    def __call__(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, **{self.kind: labels}).loss


def build_model(config: TrainConfig) -> GPT4LMHeadModel:
    """A fresh model (GPT-2 init, seeded) from config.model, or pretrained weights from init_from."""
    if config.init_from:
        return GPT4LMHeadModel.from_pretrained(config.init_from, dtype=torch.float32).train()
    return GPT4LMHeadModel(config.model_config())


def _check_vocab(source: BatchSource, config: GPT4Config) -> None:
    """ConfigError when the data holds token ids the model has no embedding for."""
    shards = getattr(source, "shards", None)
    if shards is not None and shards.vocab_size > config.vocab_size:
        raise ConfigError(
            f"the data's vocab_size={shards.vocab_size} exceeds the model's vocab_size={config.vocab_size}"
        )


def _check_global_batch(saved: dict[str, Any], source: BatchSource) -> None:
    """Warn when a resumed run's global batch differs from the checkpoint's (its losses will not continue)."""
    before, now = saved.get("global_batch_size"), getattr(source, "global_batch_size", None)
    if before is not None and now is not None and before != now:
        warnings.warn(
            f"resuming with a global batch of {now} sequences, the checkpoint's run used {before}: set "
            f"--global_batch_size={before} to continue it exactly on this world size",
            ckpt.CheckpointWarning,
            stacklevel=3,
        )


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def _shard_tokenizer(data_dir: str):
    """The tokenizer a shard directory names in meta.json, when it can be loaded (else None)."""
    from gptkit.data.shards import TokenShards

    try:
        name = TokenShards.open(data_dir).meta.get("tokenizer")
    except DataError:
        return None
    return load_tokenizer(name, Path(data_dir))


def load_tokenizer(name: str | None, base: Path | None = None):
    """GPT4Tokenizer.from_pretrained(name) (relative paths tried under ``base`` first), or None."""
    if not name:
        return None
    from gptkit.tokenizer import GPT4Tokenizer

    candidates = [base / name] if base is not None and (base / name).exists() else []
    for candidate in [*candidates, name]:
        try:
            return GPT4Tokenizer.from_pretrained(candidate)
        except (GPTKitError, OSError, ValueError):
            continue
    return None


def _tokenizer_source(config: TrainConfig) -> str | None:
    """Where export finds this run's tokenizer: the init_from model, or the data directory's meta."""
    if config.init_from:
        return config.init_from
    from gptkit.data.shards import TokenShards

    try:
        name = TokenShards.open(config.data_dir).meta.get("tokenizer")
    except DataError:
        return None
    if name and (Path(config.data_dir) / name).exists():
        return str((Path(config.data_dir) / name).resolve())
    return name
