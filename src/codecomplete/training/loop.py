"""The training loop on `deepspeed.initialize`; runs in every rank the DeepSpeed launcher starts.

    deepspeed --num_gpus 2 --module codecomplete.training.worker --config configs/train/tiny-cpu.yaml

(`codecomplete train` builds that command.) Each optimizer step: `grad_accum` micro batches of
forward / backward / engine.step, the loss averaged over ranks, logging, and on cadence validation
and an atomic checkpoint.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codecomplete.training import checkpoint as ckpt
from codecomplete.training import history
from codecomplete.training.config import TrainConfig
from codecomplete.training.data import PackedSequences, TokenShards, fim_from_tokenizer, step_indices
from codecomplete.training.ds_config import build_deepspeed_config, zero_stage
from codecomplete.training.model import (
    build_model,
    describe,
    fim_template_for,
    load_tokenizer,
    param_groups,
    save_tokenizer_and_config,
)


@dataclass
class RunState:
    step: int = 0
    tokens_seen: int = 0
    last_loss: float | None = None
    valid: list[dict[str, float]] = field(default_factory=list)
    resumed_from: str | None = None
    train_seconds: float | None = 0.0
    """Wall clock of the training loop (steps, validation, checkpoints) summed over resumes; None
    when resumed from a checkpoint that did not record it (export then estimates it from the log)."""


def _unlink_shm_allreduce_buffer(rank: int) -> None:
    """Remove the name of this rank's shared-memory allreduce segment.

    DeepSpeed's CPU allreduce (its ops/csrc/cpu/comm/shm.cpp) creates one /dev/shm segment per
    rank when the process group starts (`deepspeed_allreduce_buffer_<uid>_<addr>_<port>_<rank>`,
    69 MB) and never unlinks it, so every CPU run left 2 x 69 MB in /dev/shm for good: 19 GB after
    a day of runs and tests on the 24 GB development machine, until the OOM killer ended a test
    run. Init returns only once a rank has mapped every other rank's segment, so after a barrier
    the names can go; the memory stays mapped while the ranks run and is freed when the last one
    exits, also when a rank is killed."""
    addr, port = os.environ.get("MASTER_ADDR", ""), os.environ.get("MASTER_PORT", "")
    (Path("/dev/shm") / f"deepspeed_allreduce_buffer_{os.getuid()}_{addr}_{port}_{rank}").unlink(
        missing_ok=True
    )


def _setup_threads(cfg: TrainConfig) -> None:
    import torch

    if cfg.run.threads_per_rank:
        torch.set_num_threads(cfg.run.threads_per_rank)
    elif "OMP_NUM_THREADS" not in os.environ:
        # Ranks on one machine share its cores; oversubscribing them costs more than it gives.
        local = int(os.environ.get("LOCAL_SIZE", os.environ.get("LOCAL_WORLD_SIZE", "1")) or 1)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local)))


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_all(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """One rank's view of a run. Construct under the launcher, then call `fit()`."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None, command: str | None = None):
        import deepspeed
        import torch
        import torch.distributed as dist
        from deepspeed.accelerator import get_accelerator

        self.cfg, self.resume, self.command = cfg, resume, command
        acc = get_accelerator()
        self.accel = acc.device_name()
        if self.accel == "cpu":
            _setup_threads(cfg)
        deepspeed.init_distributed(dist_backend=acc.communication_backend_name(), verbose=False)
        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if self.accel == "cpu" and self.world > 1:
            dist.barrier()  # every rank is past init: each has mapped every rank's allreduce buffer
            _unlink_shm_allreduce_buffer(self.rank)
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.accel == "cpu":
            self.device = torch.device("cpu")
        else:
            acc.set_device(local_rank)
            self.device = torch.device(self.accel, local_rank)
        self.out = Path(cfg.run.out_dir)
        self.ckpt_root = self.out / "checkpoints"
        if self.rank == 0:
            self.ckpt_root.mkdir(parents=True, exist_ok=True)
            for p in ckpt.remove_stale_temps(self.ckpt_root):
                self.log(f"removed an interrupted checkpoint: {p.name}")
        dist.barrier()

        _seed_all(cfg.run.seed)
        self.train_shards = TokenShards(cfg.data.path, cfg.data.train_split)
        self.tokenizer = load_tokenizer(cfg.model, self.train_shards.meta)
        self._check_tokenizer()
        self.model = build_model(cfg.model, self.tokenizer, seed=cfg.run.seed)
        template = fim_template_for(cfg.model, self.tokenizer, self.model.config)
        fim = None
        if cfg.data.fim_rate > 0:
            if template is None:
                raise ValueError(
                    "data.fim_rate > 0 but the tokenizer has no FIM tokens: set --set data.fim_rate=0"
                )
            fim = fim_from_tokenizer(
                self.tokenizer.backend_tokenizer,
                template,
                self.train_shards.eos_id,
                cfg.data.fim_rate,
                cfg.data.fim_spm_rate,
            )
        self.fim_template = template.name if template else None
        self.train_data = PackedSequences(
            self.train_shards, cfg.data.seq_len, cfg.run.seed, fim, offset=cfg.data.start_sample
        )
        self.valid_data = None
        if cfg.data.valid_sequences and cfg.data.valid_split in self.train_shards.meta["splits"]:
            valid = TokenShards(cfg.data.path, cfg.data.valid_split)
            self.valid_data = PackedSequences(valid, cfg.data.seq_len, seed=0, fim=None)

        if cfg.run.compile:
            # In place (nn.Module.compile): parameter names, checkpoints and export are unchanged.
            self.model.compile()
        self.ds_config = build_deepspeed_config(cfg, self.world, self.accel)
        max_steps = cfg.run.max_steps

        def scheduler(optimizer):
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cfg.optim.lr_factor(s, max_steps))

        self.engine, _, _, self.scheduler = deepspeed.initialize(
            model=self.model,
            model_parameters=param_groups(self.model, cfg.optim.weight_decay),
            config=self.ds_config,
            lr_scheduler=scheduler,
        )
        self.state = RunState()
        # Continuing an exported model: carry its training history into this run's checkpoints.
        self.parent_history = history.read_history(cfg.model.name_or_path) if cfg.model.name_or_path else []
        self._fit_started: float | None = None
        self._writer = None
        self._metrics = None

    # --- helpers ------------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        if self.rank == 0:
            from tqdm import tqdm

            tqdm.write(msg)

    def _check_tokenizer(self) -> None:
        eos = self.tokenizer.eos_token_id
        if eos != self.train_shards.eos_id:
            raise ValueError(
                f"the tokenizer's eos id is {eos} but the token dataset was written with eos_id "
                f"{self.train_shards.eos_id}: set model.tokenizer to the tokenizer the data was tokenised with"
            )
        if len(self.tokenizer) < self.train_shards.vocab_size:
            raise ValueError(
                f"the tokenizer has {len(self.tokenizer)} tokens, the dataset up to {self.train_shards.vocab_size}:"
                " set model.tokenizer to the tokenizer the data was tokenised with"
            )

    def _mean_over_ranks(self, value):

        t = value.detach().float().reshape(1).to(self.device)
        self.dist.all_reduce(t)
        return float(t.item()) / self.world

    def _open_logs(self) -> None:
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        metrics = self.out / "metrics.jsonl"
        if metrics.exists():  # a resumed run: drop what the crashed run logged after its checkpoint
            kept = [
                ln
                for ln in metrics.read_text().splitlines()
                if ln.strip() and json.loads(ln)["step"] <= self.state.step
            ]
            metrics.write_text("".join(ln + "\n" for ln in kept))
        self._metrics = open(self.out / "metrics.jsonl", "a")  # noqa: SIM115 - kept open for the run
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.state.step + 1)
        except ImportError:  # tensorboard is in the train extra; keep training without it
            self.log("tensorboard not installed: no event files")

    def _record(self, step: int, values: dict[str, float]) -> None:
        if self.rank != 0:
            return
        for k, v in values.items():
            if self._writer is not None:
                self._writer.add_scalar(k, v, step)
        self._metrics.write(json.dumps({"step": step, **values}) + "\n")
        self._metrics.flush()
        if self._writer is not None:
            self._writer.flush()

    # --- the run ------------------------------------------------------------------------------

    def restore(self) -> None:
        import torch

        if not self.resume:
            return
        if self.resume == "auto":
            found = ckpt.latest_checkpoint(self.ckpt_root)
            if found is None:
                self.log(f"--resume auto: no complete checkpoint in {self.ckpt_root}, starting at step 0")
                return
        else:
            found = ckpt.resolve_checkpoint(self.resume)
        load_path, _ = self.engine.load_checkpoint(str(found), tag=ckpt.DS_TAG)
        if load_path is None:
            raise RuntimeError(f"DeepSpeed could not load {found}")
        saved = ckpt.read_state(found)
        self.state = RunState(
            step=saved["step"],
            tokens_seen=saved["tokens_seen"],
            last_loss=saved.get("last_loss"),
            valid=saved.get("valid", []),
            resumed_from=str(found),
            train_seconds=saved.get("train_seconds"),
        )
        if "parent_history" in saved:  # the starting folder may have been replaced since
            self.parent_history = saved["parent_history"]
        rng_file = found / f"rng-rank{self.rank:05d}.pt"
        if rng_file.is_file():
            _set_rng_state(torch.load(rng_file, weights_only=False))
        if saved.get("global_batch") != self.cfg.run.global_batch(self.world):
            self.log(
                f"warning: {found.name} was trained with a global batch of {saved.get('global_batch')}, "
                f"this run uses {self.cfg.run.global_batch(self.world)}: the data order shifts"
            )
        self.log(f"resumed from {found} at step {self.state.step} (lr {self.current_lr():.3e})")

    def current_lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def header(self) -> str:
        run, world = self.cfg.run, self.world
        return (
            f"model: {describe(self.model)}\n"
            f"deepspeed: ZeRO stage {zero_stage(self.ds_config)} ({run.zero}), {world} rank(s) on {self.accel}, "
            f"precision {run.precision}, FIM {self.cfg.data.fim_rate:g} (SPM {self.cfg.data.fim_spm_rate:g}, "
            f"template {self.fim_template}){', torch.compile' if self.cfg.run.compile else ''}\n"
            f"effective batch: {run.micro_batch_size} micro x {run.grad_accum} accum x {world} ranks = "
            f"{run.global_batch(world)} sequences x {self.cfg.data.seq_len} tokens = "
            f"{self.cfg.tokens_per_step(world):,} tokens/step; {run.max_steps} steps = "
            f"{self.cfg.tokens_per_step(world) * run.max_steps:,} tokens\n"
            f"data: {self.train_shards.num_tokens:,} training tokens ({self.train_data.num_chunks:,} sequences/epoch)"
        )

    def train_step(self, step: int) -> float:
        import torch

        run = self.cfg.run
        losses = []
        for micro in range(run.grad_accum):
            idx = step_indices(step, micro, self.rank, self.world, run.micro_batch_size, run.grad_accum)
            x = torch.from_numpy(self.train_data.batch(idx)).to(self.device)  # (B, T)
            out = self.engine(input_ids=x, labels=x, use_cache=False)
            self.engine.backward(out.loss)
            self.engine.step()
            losses.append(out.loss.detach().float())
        return self._mean_over_ranks(torch.stack(losses).mean())

    def evaluate(self) -> dict[str, float]:
        """Mean loss over the same validation sequences every time, split over the ranks. Every rank
        runs the same number of forward passes (ZeRO-3 gathers parameters collectively)."""
        import math

        import torch

        n = self.cfg.data.valid_sequences
        per_rank = -(-n // self.world)
        micro = self.cfg.run.micro_batch_size
        total, count = torch.zeros(1, device=self.device), torch.zeros(1, device=self.device)
        self.engine.eval()
        with torch.no_grad():
            for lo in range(0, per_rank, micro):
                hi = min(per_rank, lo + micro)
                idx = [self.rank * per_rank + i for i in range(lo, hi)]
                x = torch.from_numpy(self.valid_data.batch(idx)).to(self.device)
                loss = self.engine(input_ids=x, labels=x, use_cache=False).loss.float()
                total += loss * len(idx)
                count += len(idx)
        self.engine.train()
        self.dist.all_reduce(total)
        self.dist.all_reduce(count)
        loss = float((total / count).item())
        return {"valid/loss": loss, "valid/perplexity": math.exp(min(loss, 50.0))}

    def save(self) -> Path:
        import torch

        step = self.state.step
        tmp = ckpt.temp_dir(self.ckpt_root, step)
        final = self.ckpt_root / ckpt.step_dir_name(step)
        self.engine.save_checkpoint(str(tmp), tag=ckpt.DS_TAG, client_state={"step": step}, save_latest=False)
        torch.save(_rng_state(), tmp / f"rng-rank{self.rank:05d}.pt")
        if self.rank == 0 and self.cfg.run.fault_kill_in_save_at == step:
            os.kill(os.getpid(), signal.SIGKILL)  # testing: die with the shards written, unmarked
        self.dist.barrier()
        if self.rank == 0:
            save_tokenizer_and_config(self.model, self.tokenizer, tmp)
            (tmp / "recipe.yaml").write_text(self.cfg.to_yaml())
            ckpt.commit(tmp, final, self.trainer_state())
            for old in ckpt.prune(self.ckpt_root, self.cfg.run.keep_last):
                self.log(f"removed old checkpoint {old.name}")
            self.log(f"saved {final}")
        self.dist.barrier()
        return final

    def trainer_state(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "step": self.state.step,
            "tokens_seen": self.state.tokens_seen,
            "last_loss": self.state.last_loss,
            "lr": self.current_lr(),
            "valid": self.state.valid,
            "global_batch": cfg.run.global_batch(self.world),
            "world_size": self.world,
            "zero_stage": zero_stage(self.ds_config),
            "precision": cfg.run.precision,
            "seq_len": cfg.data.seq_len,
            "fim_template": self.fim_template,
            "data": {
                "path": str(cfg.data.path),
                "splits": self.train_shards.meta.get("splits", {}),
                "tokenizer": self.train_shards.meta.get("tokenizer"),
            },
            "recipe": cfg.to_dict(),
            "command": self.command,
            "train_seconds": self.elapsed(),
            "parent_history": self.parent_history,
        }

    def elapsed(self) -> float | None:
        if self.state.train_seconds is None:
            return None
        started = self._fit_started
        return round(self.state.train_seconds + (time.perf_counter() - started if started else 0.0), 1)

    def fit(self) -> dict[str, Any]:
        from tqdm import tqdm

        run = self.cfg.run
        self.restore()
        if self.state.step >= run.max_steps:  # resuming a finished run: nothing to redo or overwrite
            self.log(
                f"run already at step {self.state.step} of {run.max_steps}: nothing to do "
                "(raise run.max_steps to train further)"
            )
            return {
                "step": self.state.step,
                "train_loss": self.state.last_loss,
                "valid": self.state.valid[-1:],
            }
        self.log(self.header())
        self._open_logs()
        self._fit_started = time.perf_counter()
        tokens_per_step = self.cfg.tokens_per_step(self.world)
        bar = tqdm(
            total=run.max_steps,
            initial=self.state.step,
            disable=self.rank != 0,
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
        )
        window_t, window_steps = time.perf_counter(), 0
        last_eval = last_save = -1
        while self.state.step < run.max_steps:
            step = self.state.step
            lr = self.current_lr()
            loss = self.train_step(step)
            self.state.step = step + 1
            self.state.tokens_seen += tokens_per_step
            self.state.last_loss = loss
            window_steps += 1
            now = time.perf_counter()
            tok_s = tokens_per_step * window_steps / max(now - window_t, 1e-9)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}", refresh=False)
            bar.update(1)
            if self.state.step % run.log_every == 0 or self.state.step == run.max_steps:
                values = {
                    "train/loss": loss,
                    "train/lr": lr,
                    "train/tokens_per_s": tok_s,
                    "train/tokens_seen": self.state.tokens_seen,
                }
                grad_norm = self.engine.get_global_grad_norm()
                if grad_norm is not None:
                    values["train/grad_norm"] = float(grad_norm)
                self._record(self.state.step, values)
                window_t, window_steps = now, 0
            if self.rank == 0 and run.fault_kill_at_step == self.state.step:
                os.kill(os.getpid(), signal.SIGKILL)  # testing: a hard crash between checkpoints
            # The last step is always evaluated before its checkpoint is saved, so the final
            # checkpoint (what export reads) holds the final validation loss.
            done = self.state.step == run.max_steps or self._out_of_time()
            if self.valid_data is not None and (
                done or (run.eval_every and self.state.step % run.eval_every == 0)
            ):
                self._eval_and_record()
                last_eval = self.state.step
            if run.save_every and self.state.step % run.save_every == 0:
                self.save()
                last_save = self.state.step
            if last_eval == self.state.step or last_save == self.state.step:
                window_t, window_steps = time.perf_counter(), 0  # keep eval/save time out of tokens/s
            if done and self.state.step < run.max_steps:
                self.log(f"run.time_limit_s={run.time_limit_s:g} reached at step {self.state.step}: stopping")
                break
        bar.close()  # the last step was evaluated in the loop
        if last_save != self.state.step:
            self.save()
        summary = {
            "step": self.state.step,
            "train_loss": self.state.last_loss,
            "valid": self.state.valid[-1:],
        }
        if self.rank == 0:
            (self.out / "summary.json").write_text(json.dumps(self.trainer_state(), indent=2) + "\n")
            if self._writer is not None:
                self._writer.close()
            self._metrics.close()
        return summary

    def _out_of_time(self) -> bool:
        """Every rank must agree, or one would stop while the others wait in a collective."""
        limit = self.cfg.run.time_limit_s
        if not limit:
            return False
        import torch

        over = torch.tensor([float(time.perf_counter() - self._fit_started > limit)], device=self.device)
        self.dist.all_reduce(over)
        return bool(over.item() > 0)

    def _eval_and_record(self) -> None:
        values = self.evaluate()
        self.state.valid.append({"step": self.state.step, **values})
        self._record(self.state.step, values)
        self.log(
            f"step {self.state.step}: valid loss {values['valid/loss']:.4f}, "
            f"perplexity {values['valid/perplexity']:.2f}"
        )


def train(cfg: TrainConfig, resume: str | None = None, command: str | None = None) -> dict[str, Any]:
    return Trainer(cfg, resume, command).fit()
