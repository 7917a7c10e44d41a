"""Training loop: K configs of one shape and batch size trained together as one packed model.

One step, entirely on the device and free of host syncs: gather the step's windows (offsets from the
Rust batcher, precomputed for every step), forward/backward of the packed model, per-model global
gradient norm, clipping exactly as `torch.nn.utils.clip_grad_norm_`, AdamW exactly as
`torch.optim.AdamW` (or SGD with momentum as `torch.optim.SGD`) with a per-model learning rate,
and telemetry written into preallocated per-step buffers. On CUDA the whole step is captured once
in a CUDA graph and replayed; validation and checkpoints happen between replays. Several packs
with the same number of steps can share one graph, each on its own stream (`run_together`), so
the GPU overlaps their kernels. pyphase's kernels are deterministic (fixed-order reductions, no
atomic adds), so with them (the default for the phase shapes) a pack computes the same bits alone,
side by side, again, or resumed from a checkpoint, with the fp32 residual stream and a bf16 gradient
(the default on CUDA, `model.residual_mode`), the fp32 stream and gradient (PYPHASE_RESIDUAL=fp32)
or the opt-in bf16 stream (PYPHASE_RESIDUAL=bf16);
stock fallbacks (the embedding backward above a 128 x 128 vocabulary x d table, the
PYPHASE_ATTENTION/MLP/LN/HEAD/OPTIM/COMPILE switches) may add atomically and lose that.

A model whose loss or gradient norm becomes non-finite is frozen (zero update) from that step on
and recorded as diverged; the others train on unaffected. On CUDA the kernels skip a frozen model
from its next step on (`kernels.skipping_dead`), so a pack with diverged models steps faster, and
every other model's bits stay as they were; its step metrics after the divergence are NaN.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import polars as pl
import torch
from torch import Tensor

from pyphase import _core, kernels, optim, packing
from pyphase.config import config_record
from pyphase.errors import PyphaseError, first_line
from pyphase.model import (RESIDUAL_MODES, PackedNanoTransformer, Shape, head_losses, packed_losses, residual_mode,
                           transformer_block)
from pyphase.packing import WorkingCopy
from pyphase.schema import STEP_COLUMNS

if TYPE_CHECKING:
    from pyphase.config import RunConfig
    from pyphase.data import Corpus

# Fraction of the run whose train losses make final_train_loss and train_loss_std.
FINAL_WINDOW = 0.1
# torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing.
CLIP_EPS = 1e-6
# Validation windows per forward pass in `PackTrainer.evaluate`.
EVAL_CHUNK = 32
# Steps between two updates of the per-step progress bar on CUDA (on the CPU: every step; `_lockstep`).
BAR_EVERY_CUDA = 50
# Environment switches that change a run's numbers (other kernels or another precision); a summary
# row's "numerics" names those that were set.
NUMERIC_SWITCHES = ("PYPHASE_ATTENTION", "PYPHASE_COMPILE", "PYPHASE_HEAD", "PYPHASE_LN", "PYPHASE_MLP",
                    "PYPHASE_OPTIM", "PYPHASE_RESIDUAL", "PYPHASE_WGRAD")
# The defaults' numerics revision: bumped whenever a change of default gives other bits with the same
# `numerics` label (which names only the switches that are set). A checkpoint records it and one of
# another revision is not continued (`PackTrainer.load`). History:
#   1  c9530b1 (session 45): the bf16 residual stream the default on CUDA; checkpoints record `numerics`
#   2  64f9045 (session 45): the projections' weight gradients by a Triton kernel (PYPHASE_WGRAD=cublas
#      gives revision 1's bits)
NUMERICS_REVISION = 2


def numerics(amp: bool, residual: str = "fp32") -> str:
    """The summary's "numerics": "bf16 autocast" or "fp32", then the NUMERIC_SWITCHES set, e.g.
    "bf16 autocast; PYPHASE_MLP=torch". The residual stream is named by the mode in effect
    (`residual`, `model.residual_mode`), set or by default, as PYPHASE_RESIDUAL=bf16 or =bf16grad,
    and not at all for fp32 (under autocast only, the only place it acts): the same label for the
    same numbers, e.g. "bf16 autocast" for every run with the fp32 stream and gradient, the default
    before session 16."""
    set_ = [f"{k}={os.environ[k]}" for k in NUMERIC_SWITCHES if os.environ.get(k) and k != "PYPHASE_RESIDUAL"]
    if amp and residual != "fp32":
        set_.append(f"PYPHASE_RESIDUAL={residual}")
    return "; ".join(["bf16 autocast" if amp else "fp32", *set_])


@dataclass
class RunOutput:
    """What one config of a pack produced: a summary row and its per-step metrics."""

    config: "RunConfig"
    summary: dict[str, Any]
    steps: pl.DataFrame


@dataclass
class _State:
    """Everything a step mutates, as device tensors (so a CUDA graph can replay it)."""

    t: Tensor  # scalar int64: index of the next step
    m: Tensor  # (K, P) first moment / momentum buffer
    v: Tensor  # (K, P) second moment (AdamW only; empty for SGD)
    alive: Tensor  # (K,) bool
    diverged_step: Tensor  # (K,) int64, -1 while alive
    loss: Tensor  # (steps, K) train loss per step
    norm_before: Tensor  # (steps, K)
    norm_after: Tensor  # (steps, K)
    clipped: Tensor  # (steps, K) 0/1
    lr: Tensor  # (steps, K) learning rate applied
    # (step, val loss per model, weight norm per model), at every evaluation; during training the
    # two may be (K,) device tensors not read back yet (`PackTrainer._settle_evals`)
    evals: list[tuple[int, Any, Any]] = field(default_factory=list)

    def tensors(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.__dict__.items() if isinstance(v, Tensor)}


def check_pack(configs: Sequence["RunConfig"]) -> None:
    """All configs of a pack must share everything but LR, clip, weight decay and seed."""
    if not configs:
        raise ValueError("train_pack needs at least one config")
    keys = {c.pack_key() for c in configs}
    if len(keys) != 1:
        raise ValueError(f"configs of one pack differ in shape/batch/steps/optimizer: {sorted(map(str, keys))}")


def lr_multipliers(config: "RunConfig") -> np.ndarray:
    """Schedule multiplier per step: linear warmup, then constant or cosine decay to 0."""
    n, w = config.steps, config.warmup_steps
    s = np.arange(n, dtype=np.float64)
    mult = np.ones(n)
    if w > 0:
        mult = np.minimum(1.0, (s + 1) / w)
    if config.schedule == "cosine":
        prog = np.clip((s - w) / max(1, n - w), 0.0, 1.0)
        mult = np.where(s < w, mult, 0.5 * (1 + np.cos(math.pi * prog)))
    return mult


class PackTrainer:
    """Owns the packed model, optimizer state and telemetry of one pack; `run()` trains it."""

    def __init__(self, configs: Sequence["RunConfig"], corpus: "Corpus", device: str = "cpu",
                 precision: str = "auto", compile: bool | None = None, cuda_graph: bool | None = None) -> None:
        self._created = time.perf_counter()
        check_pack(configs)
        self.configs = list(configs)
        self.c0 = c0 = configs[0]
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.amp = (precision == "bf16") or (precision == "auto" and cuda)
        residual = os.environ.get("PYPHASE_RESIDUAL", "")
        if residual.lower() not in RESIDUAL_MODES:
            raise PyphaseError(f"PYPHASE_RESIDUAL={residual!r}: expected one of {', '.join(RESIDUAL_MODES[1:])} "
                               "(or unset: bf16 on CUDA without torch.compile, else fp32)")
        self.use_graph = cuda if cuda_graph is None else (cuda_graph and cuda)
        # Default on CUDA: nothing compiled (PYPHASE_COMPILE unset or "none"), see `compile_mode`.
        mode = compile_mode()
        self.use_compile = (cuda and mode != "none") if compile is None else compile
        if residual.lower() == "bf16grad" and self.use_compile:  # its carriers exist only uncompiled (model.py)
            raise PyphaseError("PYPHASE_RESIDUAL=bf16grad works only uncompiled: unset PYPHASE_COMPILE "
                               "(or set it to none)")
        # The residual stream's numerics in effect (the summary's "numerics" names them).
        self.residual = residual_mode(self.device.type, self.use_compile) if self.amp else "fp32"
        if cuda:
            # Measured on the H100 (torch 2.11): the cuDNN attention backend copies the strided
            # q/k/v/grad views into its own layout, 16 copies a step at ~190 us each for K=5, B=256;
            # the flash backend reads them in place.
            torch.backends.cuda.enable_cudnn_sdp(False)
            if self.use_graph and not self.use_compile:  # its kernels are compiled before the first step
                kernels.prepare_compiles()
        self.shape = Shape.of(c0.model, corpus.tokenizer.vocab_size)
        # what a checkpoint records of the corpus, so that a pack is never continued on another one
        self.corpus_name, self.corpus_sha256 = str(corpus.name), str(corpus.sha256)
        k, steps, dev = len(configs), c0.steps, self.device
        self.k, self.steps = k, steps
        self.model = PackedNanoTransformer(self.shape, [c.seed for c in configs]).to(dev)
        p = self.model.n_params
        # Under autocast (uncompiled) the step reads the weights it rounds anyway from one copy in
        # bf16 made once a step, and its gradients come back through `WorkingCopy.gather`: the same
        # bits as rounding them where used, ~50 fewer kernels a step (pyphase.packing).
        self.working = (WorkingCopy(self.model, torch.bfloat16)
                        if self.amp and not self.use_compile and packing.enabled() else None)
        f32 = dict(device=dev, dtype=torch.float32)
        self.lr = torch.tensor([c.lr for c in configs], **f32)
        self.wd = torch.tensor([c.weight_decay for c in configs], **f32)
        self.clip = torch.tensor([c.gradient_clip if c.gradient_clip is not None else math.inf for c in configs], **f32)
        self.sched = torch.tensor(lr_multipliers(c0), **f32)
        adam = c0.optimizer == "adamw"
        self.state = _State(
            t=torch.zeros((), device=dev, dtype=torch.int64),
            m=torch.zeros(k, p, **f32),
            v=torch.zeros(k, p, **f32) if adam else torch.zeros(0, **f32),
            alive=torch.ones(k, device=dev, dtype=torch.bool),
            diverged_step=torch.full((k,), -1, device=dev, dtype=torch.int64),
            loss=torch.full((steps, k), math.nan, **f32),
            norm_before=torch.full((steps, k), math.nan, **f32),
            norm_after=torch.full((steps, k), math.nan, **f32),
            clipped=torch.zeros(steps, k, **f32),
            lr=torch.zeros(steps, k, **f32),
        )
        # Data: every step's window offsets, from the seeded Rust batcher, on the device once.
        t_len = c0.model.block_size
        corpus.check_windows(t_len)  # a split too short for one window: an error naming it, not the batcher's
        train = np.ascontiguousarray(corpus.train)
        offs = _core.batch_offsets(len(train), t_len, c0.batch_size, [c.seed for c in configs], 0, steps)
        self.offsets = torch.from_numpy(offs).to(dev)
        self.tokens = torch.from_numpy(train.astype(np.int64)).to(dev)
        self.window = torch.arange(t_len + 1, device=dev)
        valid = np.ascontiguousarray(corpus.valid)
        all_windows = _core.eval_offsets(len(valid), t_len)
        vo = all_windows[: c0.eval_windows]
        if len(all_windows) < c0.eval_windows:  # the config's number is what gets recorded: say so
            print(f"pyphase: eval_windows = {c0.eval_windows} but the validation split ({len(valid):,} tokens) holds "
                  f"{len(all_windows)} windows of {t_len + 1}: evaluating on those {len(all_windows)}", file=sys.stderr)
        vx, vy = _core.gather_windows(valid, vo, t_len)
        self.val_x = torch.from_numpy(vx).to(dev)
        self.val_y = torch.from_numpy(vy).to(dev)
        self._losses: Callable[..., Tensor] = (_compiled_losses("whole" if mode == "none" else mode)
                                               if self.use_compile else packed_losses)
        self._graph: torch.cuda.CUDAGraph | None = None
        self.wall = 0.0
        self.setup_time = math.nan

    # ------------------------------------------------------------------ one step (graph-capturable)
    def _batch(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs and targets (K, B, T) of step t (a one-element tensor), gathered on the device."""
        off = self.offsets.index_select(0, t)[0]  # (K, B)
        win = self.tokens[off[..., None] + self.window]  # (K, B, T+1)
        return win[..., :-1], win[..., 1:]

    def _val_batch(self, a: int, chunk: int) -> tuple[Tensor, Tensor]:
        """Validation windows [a, a + chunk) as inputs and targets (K, chunk, T), the same for each model."""
        return self.val_x[a : a + chunk].expand(self.k, -1, -1), self.val_y[a : a + chunk].expand(self.k, -1, -1)

    def _step(self) -> None:
        st, c0 = self.state, self.c0
        t = st.t
        x, y = self._batch(t.view(1))
        if self.use_compile and x.shape[1] > 1:
            # The batch size is a dynamic dimension: packs of another batch size (and the same
            # shape) reuse the compiled forward/backward instead of compiling their own (measured
            # on the H100: 0.6% slower kernels, one slower compile instead of one per batch size;
            # results/bench/README.md). Size 1 is left static, as torch.compile specialises it.
            torch._dynamo.mark_dynamic(x, 1)
            torch._dynamo.mark_dynamic(y, 1)
        # A model that diverged in an earlier step is frozen: the kernels skip it (its loss,
        # gradient and norm here are whatever its buffers held, read by nobody but the masks below).
        w, leaves = self._weights()
        with kernels.skipping_dead(st.alive):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                losses = self._losses(self.shape, w, x, y)
            grads = torch.autograd.grad(losses.sum(), leaves)
        with torch.no_grad():
            g = self._flat_grad(grads)
            norm = optim.grad_norm(g)
            finite = torch.isfinite(losses) & torch.isfinite(norm)
            was_alive = st.alive.clone()
            newly_dead = st.alive & ~finite
            st.diverged_step.copy_(torch.where(newly_dead, t, st.diverged_step))
            st.alive.logical_and_(finite)
            coef = torch.clamp(self.clip / (norm + CLIP_EPS), max=1.0)
            lr_t = self.lr * self.sched.index_select(0, t.view(1)) * st.alive
            self._update(g, coef, lr_t)
            # Telemetry up to and including the step that diverged; NaN (not clipped) after it.
            row = t.view(1)
            st.loss.index_copy_(0, row, torch.where(was_alive, losses.detach().float(), math.nan)[None])
            st.norm_before.index_copy_(0, row, torch.where(was_alive, norm, math.nan)[None])
            st.norm_after.index_copy_(0, row, torch.where(was_alive, norm * coef, math.nan)[None])
            st.clipped.index_copy_(0, row, ((norm > self.clip) & was_alive).float()[None])
            st.lr.index_copy_(0, row, lr_t[None])
            st.t.add_(1)

    def _weights(self) -> tuple[dict[str, Tensor], list[Tensor]]:
        """The parameters a step reads and differentiates: the working copy's (refreshed from
        `flat` now) where there is one, else the model's fp32 leaves."""
        if self.working is None:
            return self.model._leaf, self.model.leaves
        self.working.refresh()
        return self.working.leaf, self.working.leaves

    def _flat_grad(self, grads: Sequence[Tensor]) -> Tensor:
        """The step's gradients (in `_weights` order) as one (K, P) fp32 buffer in `flat`'s order."""
        return self.working.gather(grads) if self.working is not None else self.model.flat_grad(list(grads))

    def _update(self, g: Tensor, coef: Tensor, lr_t: Tensor) -> None:
        """Clip factor, divergence mask and optimizer update, in place (one kernel on CUDA: pyphase.optim)."""
        st, c0 = self.state, self.c0
        if c0.optimizer == "adamw":
            optim.adamw_(self.model.flat, g, st.m, st.v, st.alive, coef, lr_t, self.wd, st.t, c0.betas, c0.eps)
        else:
            optim.sgd_(self.model.flat, g, st.m, st.alive, coef, lr_t, self.wd, c0.momentum)

    # ------------------------------------------------------------------ graph capture
    def precompile(self) -> float:
        """Compile every Triton kernel the step and the evaluation launch, in parallel (see
        pyphase.kernels), from one dry forward + backward pass that runs none of them and changes
        no state. Nothing to do under torch.compile (it compiles its own kernels) or on the CPU.
        Returns the seconds it took."""
        t0 = time.perf_counter()
        precompile_together([self])
        return time.perf_counter() - t0

    def kernel_launches(self) -> list[tuple[Any, ...]]:
        """The Triton launches of a step and of the evaluation, recorded by a dry forward + backward
        pass that runs none of them and changes no state (empty under torch.compile or on the CPU);
        `precompile` compiles them, `precompile_together` several packs' at once."""
        if self.device.type != "cuda" or self.use_compile:
            return []
        with kernels.record() as launches, torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            w, leaves = self._weights()
            losses = packed_losses(self.shape, w, *self._batch(self.state.t.new_zeros(1)))
            grads = torch.autograd.grad(losses.sum(), leaves)
            with torch.no_grad():
                self._flat_grad(grads)
            n = self.val_x.shape[0]
            with torch.no_grad():  # the evaluation's chunk sizes: a full one and the last, shorter one
                for a in sorted({0, n - n % EVAL_CHUNK} - {n}):
                    packed_losses(self.shape, self.model._leaf, *self._val_batch(a, EVAL_CHUNK))
                if optim.supported(self.model.flat):  # the update's kernels, recorded only
                    optim.grad_norm(self.model.flat)
                    self._update(self.model.flat, self.lr, self.lr)
        return launches

    def warm_up(self) -> None:
        """Three steps on a side stream, then undone: what a CUDA graph capture needs first (the
        caching allocator's and cuBLAS's first-use work happens outside the capture)."""
        snap = self._snapshot()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                self._step()
        torch.cuda.current_stream().wait_stream(s)
        self._restore(*snap)

    def capture(self) -> None:
        """Capture one step in a CUDA graph. Warm-up steps run on a side stream and are undone, so
        the captured run is identical to an eager one."""
        self.warm_up()
        self._graph = capture_steps([self])

    def _snapshot(self) -> tuple[dict[str, Tensor], Tensor]:
        return {k: v.clone() for k, v in self.state.tensors().items()}, self.model.flat.clone()

    def _restore(self, snap: dict[str, Tensor], flat0: Tensor) -> None:
        with torch.no_grad():
            for k, v in self.state.tensors().items():
                v.copy_(snap[k])
            self.model.flat.copy_(flat0)

    def step(self) -> None:
        if self._graph is not None:
            self._graph.replay()
        else:
            self._step()

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, chunk: int = EVAL_CHUNK) -> tuple[list[float], list[float]]:
        """Mean validation loss of each model on the fixed validation windows, and its weight norm."""
        val, norm = self._evaluate_queued(chunk)
        return val.tolist(), norm.tolist()

    @torch.no_grad()
    def _evaluate_queued(self, chunk: int = EVAL_CHUNK) -> tuple[Tensor, Tensor]:
        """`evaluate` without waiting for it: (K,) tensors on the device, computed in stream order
        after the steps queued before. The training loop stores them in `state.evals` and reads them
        back only where it waits for the device anyway (`_settle_evals`), so an evaluation costs
        the device its kernels and no idle time: read back at once, the loop had to wait for every
        queued step and then for the evaluation's launches, with nothing queued behind them."""
        n = self.val_x.shape[0]
        total = torch.zeros(self.k, device=self.device)
        for a in range(0, n, chunk):
            x, y = self._val_batch(a, chunk)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                total += packed_losses(self.shape, self.model._leaf, x, y) * x.shape[1]
        # the weight norm in a fixed order that does not depend on K on CUDA (torch's norm picks its
        # reduction's split from the number of models: an ulp apart alone and in a pack)
        flat = self.model.flat
        return total / n, optim.grad_norm(flat) if optim.supported(flat) else flat.norm(dim=1)

    def _settle_evals(self) -> list[tuple[int, list[float], list[float]]]:
        """`state.evals` with the queued evaluations read back (one transfer for all of them)."""
        ev = self.state.evals
        queued = [i for i, (_, v, _) in enumerate(ev) if isinstance(v, Tensor)]
        if queued:
            back = torch.stack([torch.stack(ev[i][1:]) for i in queued]).tolist()
            for i, (v, w) in zip(queued, back):
                ev[i] = (ev[i][0], v, w)
        return ev

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_blob(self) -> dict[str, Any]:
        """Everything needed to continue exactly where we are, copied to the host (`write_checkpoint`
        writes it, possibly later: training goes on meanwhile)."""
        return {
            "run_ids": [c.run_id for c in self.configs],
            # copies even on the CPU (where .cpu() would return the live tensor the training mutates)
            "flat": self.model.flat.detach().to("cpu", copy=True),
            "state": {k: v.detach().to("cpu", copy=True) for k, v in self.state.tensors().items()},
            "evals": list(self._settle_evals()),
            "wall": self.wall,
            "numerics": numerics(self.amp, self.residual),
            "numerics_revision": NUMERICS_REVISION,
            "configs": [config_record(c) for c in self.configs],
            "corpus": self.corpus_name,
            "corpus_sha256": self.corpus_sha256,
        }

    def load(self, path: Path) -> bool:
        """Restore from a checkpoint of the same pack; False (and no change) if it is another pack's,
        and also, with a line on stderr saying why (the pack then trains from step 0), if it cannot
        be read (truncated, emptied), if its runs were trained under other settings (any field of a
        run's config: weight decay, steps, model shape, ...; or not recorded, as before session 48),
        on another corpus (its sha256; or not recorded, as in checkpoints written before it was: they
        restart too, as a continued run could not be told from one that switched corpora midway),
        or with other numerics (`numerics`: another precision, switch or default, e.g. written
        before an upgrade changed the residual stream's default; or not recorded, as before session
        45), or by code whose defaults gave other bits under the same label (another
        NUMERICS_REVISION, or none recorded, as before session 47): a run continued that way would
        mix two trainings under one summary's label."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=False)
            ids = blob["run_ids"]
        except CORRUPT_CHECKPOINT as e:  # a damaged file (not an I/O error, which is raised): start over
            return self._restart(path, f"cannot be read ({type(e).__name__}: {first_line(e)})")
        if ids != [c.run_id for c in self.configs]:
            return False
        changed = _changed_fields(blob.get("configs"), self.configs)
        if changed:
            return self._restart(path, f"was trained with other settings ({changed})")
        sha = blob.get("corpus_sha256")
        if sha != self.corpus_sha256:
            was = (f"on {blob.get('corpus') or 'an unnamed corpus'} (sha256 {sha[:12]})" if isinstance(sha, str)
                   else "on a corpus it does not record (written before checkpoints recorded it)")
            return self._restart(path, f"was trained {was}, this run's corpus is {self.corpus_name} "
                                       f"(sha256 {self.corpus_sha256[:12]})")
        want, got = numerics(self.amp, self.residual), blob.get("numerics_revision")
        if blob.get("numerics") != want:
            return self._restart(path, f"was trained with numerics {blob.get('numerics') or '(not recorded)'!r}, "
                                       f"this run's are {want!r}")
        if got != NUMERICS_REVISION:
            return self._restart(path, f"was trained by pyphase's numerics revision "
                                       f"{'(not recorded)' if got is None else got}, this code's is "
                                       f"{NUMERICS_REVISION} (its defaults may give other bits)")
        state = blob.get("state") if isinstance(blob.get("state"), dict) else {}
        mine = {"flat": self.model.flat, **{f"state {k}": v for k, v in self.state.tensors().items()}}
        theirs = {"flat": blob.get("flat"), **{f"state {k}": state.get(k) for k in self.state.tensors()}}
        for k, v in mine.items():
            if not isinstance(theirs[k], Tensor) or theirs[k].shape != v.shape:
                return self._restart(path, f"holds no {k} of shape {tuple(v.shape)}")
        if not isinstance(blob.get("evals"), list) or not isinstance(blob.get("wall"), (int, float)):
            return self._restart(path, "holds no evaluations or wall time")
        with torch.no_grad():
            for k, v in mine.items():
                v.copy_(theirs[k])
        self.state.evals = list(blob["evals"])
        self.wall = float(blob["wall"])
        return True

    @staticmethod
    def _restart(path: Path, why: str) -> bool:
        print(f"pyphase: {path} {why}: training its pack from step 0", file=sys.stderr, flush=True)
        return False

    # ------------------------------------------------------------------ the loop
    def run(self, checkpoint: Path | None = None, checkpoint_every: int = 1000, progress: bool = True,
            stop_after: int | None = None) -> list[RunOutput]:
        """Train to the end (resuming from `checkpoint` if it holds this pack) and summarise.
        `stop_after` (tests only) raises KeyboardInterrupt once that many steps ran in this call."""
        return run_together([self], [checkpoint], checkpoint_every=checkpoint_every, progress=progress,
                            stop_after=stop_after)[0]

    def begin(self, checkpoint: Path | None = None, precompile: bool = True) -> int:
        """Everything before the first step but the graph capture (`capture_steps`, which may hold
        other packs' steps too): resume from `checkpoint` if it holds this pack, compile the
        kernels (unless `precompile` is False: `precompile_together` did), warm up for the capture,
        evaluate the untrained models. Returns the step to start from."""
        if checkpoint is not None and checkpoint.exists():
            self.load(checkpoint)
        start = int(self.state.t.item())
        if self.use_graph and start < self.steps:
            if precompile:
                self.precompile()
            self.warm_up()
        if start == 0 and not self.state.evals:
            self.state.evals.append((0, *self.evaluate()))
        return start

    def end_of_step(self, n: int, checkpoint: Path | None, checkpoint_every: int) -> bool:
        """After step n (1-based): evaluate on the evaluation steps; True when a checkpoint is due."""
        if n % self.c0.eval_interval == 0 or n == self.steps:
            self.state.evals.append((n, *self._evaluate_queued()))
        return checkpoint is not None and n % checkpoint_every == 0 and n < self.steps

    # ------------------------------------------------------------------ summaries
    def outputs(self) -> list[RunOutput]:
        st = self.state
        self._settle_evals()
        arr = {k: getattr(st, k).cpu().numpy() for k in ("loss", "norm_before", "norm_after", "clipped", "lr")}
        div = st.diverged_step.cpu().numpy()
        tokens = self.k * self.c0.batch_size * self.c0.model.block_size * self.steps
        outs = []
        for k, cfg in enumerate(self.configs):
            d = int(div[k])
            ok = slice(0, d if d >= 0 else self.steps)  # steps before divergence
            loss = arr["loss"][ok, k]
            tail = loss[-max(1, int(round(FINAL_WINDOW * len(loss)))):] if len(loss) else np.array([math.nan])
            val = st.evals[-1][1][k]
            final_train = float(np.mean(tail))
            summary = {
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
                "gradient_clip": cfg.gradient_clip,
                "final_train_loss": final_train,
                "final_val_loss": float(val),
                "train_loss_std": float(np.std(tail)),
                "avg_grad_norm_before": float(np.mean(arr["norm_before"][ok, k])) if len(loss) else math.nan,
                "avg_grad_norm_after": float(np.mean(arr["norm_after"][ok, k])) if len(loss) else math.nan,
                "avg_clip_frequency": float(np.mean(arr["clipped"][ok, k])) if len(loss) else math.nan,
                "converged": converged(d, final_train, float(val), self.shape.vocab_size),
                "num_steps": self.steps,
                "n_params": self.model.n_params,
                "diverged_step": d if d >= 0 else None,
                "wall_time_s": self.wall,
                "tokens_per_s": tokens / self.wall if self.wall > 0 else math.nan,
                "pack_size": self.k,
                "setup_time_s": self.setup_time,
                "numerics": numerics(self.amp, self.residual),
                "device": _device_name(self.device),
                "torch_version": torch.__version__,
            }
            val_by_step = {s: e[k] for s, e, _ in st.evals}
            wn_by_step = {s: w[k] for s, _, w in st.evals}
            steps_df = pl.DataFrame(
                {
                    "run_id": [cfg.run_id] * self.steps,
                    "step": np.arange(1, self.steps + 1),
                    "lr": arr["lr"][:, k].astype(np.float64),
                    "train_loss": arr["loss"][:, k].astype(np.float64),
                    "grad_norm_before": arr["norm_before"][:, k].astype(np.float64),
                    "grad_norm_after": arr["norm_after"][:, k].astype(np.float64),
                    "clipped": arr["clipped"][:, k] > 0.5,
                    "val_loss": [val_by_step.get(s) for s in range(1, self.steps + 1)],
                    "weight_norm": [wn_by_step.get(s) for s in range(1, self.steps + 1)],
                },
                schema_overrides={"val_loss": pl.Float64, "weight_norm": pl.Float64},
            )
            if 0 in val_by_step:  # the evaluation before training, as step 0
                row0 = {c: None for c in STEP_COLUMNS} | {"run_id": cfg.run_id, "step": 0, "val_loss": val_by_step[0],
                                                               "weight_norm": wn_by_step[0]}
                steps_df = pl.concat([pl.DataFrame([row0], schema=steps_df.schema), steps_df])
            outs.append(RunOutput(cfg, summary, steps_df.select(STEP_COLUMNS)))
        return outs


# What torch.load raises on a truncated, emptied or otherwise damaged checkpoint (and what reading a
# blob of another layout raises); an OSError (a disk or permission problem) is not among them: raised,
# it leaves the checkpoint for a later run.
CORRUPT_CHECKPOINT: tuple[type[BaseException], ...] = (RuntimeError, EOFError, pickle.UnpicklingError, KeyError,
                                                       TypeError, ValueError, AttributeError, IndexError)


def _changed_fields(stored: Any, configs: Sequence[RunConfig]) -> str:
    """"" if a checkpoint's recorded configs are those of `configs`, else which fields differ (of the
    first run that differs)."""
    want = [config_record(c) for c in configs]
    if not isinstance(stored, list) or len(stored) != len(want) or not all(isinstance(s, dict) for s in stored):
        return "its configs are not recorded"
    for c, s, w in zip(configs, stored, want):
        diff = [f"{k} {s.get(k)!r} -> {w[k]!r}" for k in w if s.get(k) != w[k]]
        if diff:
            return f"{c.run_id}: " + ", ".join(diff)
    return ""


def converged(diverged_step: int, final_train: float, final_val: float, vocab_size: int) -> bool:
    """A run converged when it stayed finite (no diverged step) and ended, on the training loss of its
    last steps and on the final validation loss, clearly below the uniform-guess loss ln V. The
    validation condition was added after a phase3a run (B = 256, LR 0.1, commit 09d8738) ended with a
    training loss just under ln V - 0.1 but a final validation loss of 7.15 after a late spike."""
    bar = math.log(vocab_size) - 0.1
    return bool(diverged_step < 0 and math.isfinite(final_val) and final_train < bar and final_val < bar)


def compile_mode() -> str:
    """PYPHASE_COMPILE, default "none": on CUDA the training step runs pyphase's Triton kernels for
    attention, MLP, add + LayerNorm and head + cross-entropy, and stock kernels for the rest, all in
    one CUDA graph, without torch.compile. Measured on the H100 (commit ed57c9b/c5aaedc,
    results/bench/bench_compile_ed57c9b.txt, variants_k5_b256_c5aaedc.txt): compiling ("whole")
    makes the K = 5 steps 3.5-5.4% faster (B = 256: 17.88 against 18.51 ms) but costs 12 s more
    cold start (first step 17.2 against 7.6 s), which phase3a's 10,000 steps do not earn back:
    the uncompiled phase3a took 165.7 s cold, against 185.5-197.5 s compiled in earlier runs."""
    return os.environ.get("PYPHASE_COMPILE", "none")


@functools.cache
def _compiled_losses(mode: str = "whole") -> Callable[..., Tensor]:
    """`packed_losses` under torch.compile, one per process and mode (PYPHASE_COMPILE): its compiled
    code is shared by every pack whose shapes match up to the batch size (marked dynamic in
    `PackTrainer._step`; other sizes become dynamic by torch.compile's own rule once they change).

    - "whole": the entire forward pass is one graph (and AOTAutograd's one backward graph).
    - "regional": `transformer_block` is compiled (once: every layer has the same signature),
      `head_losses` (head and cross-entropy) is a second graph; the embedding and the loop over
      layers run uncompiled.
      Smaller graphs, shorter cold compile.
    - "blocks": only `transformer_block` compiled, the head uncompiled: one compile less, slower
      steps.
    - "none" (the default, read by `PackTrainer`): nothing compiled (see `compile_mode`); a trainer
      told to compile anyway (compile=True) compiles "whole".
    Measured on the H100 (benches/bench_compile.py, K = 5, B = 128, cold caches, commit 9d3f496,
    results/bench/bench_compile_9d3f496.txt): first step (compile + capture) 26.9 s whole, 25.0 s
    regional, 19.0 s blocks; steady step 10.03 / 10.35 / 11.82 ms: of the compiled modes, whole
    is the one worth its compile."""
    if mode == "whole":
        return torch.compile(packed_losses, dynamic=None)
    if mode in ("regional", "blocks"):
        # arguments with a batch dimension: x and h (the block's first LayerNorm's output)
        block = _batch_dynamic(torch.compile(transformer_block, dynamic=None), 0, 1)
        head = _batch_dynamic(torch.compile(head_losses, dynamic=None), 0, -1) if mode == "regional" else None
        return functools.partial(packed_losses, block=block, head=head)
    raise ValueError(f"PYPHASE_COMPILE: expected 'whole', 'regional', 'blocks' or 'none', got {mode!r}")


def _batch_dynamic(fn: Callable[..., Tensor], *positions: int) -> Callable[..., Tensor]:
    """`fn` with dimension 1 (the batch) of its arguments at `positions` marked dynamic, as
    `PackTrainer._step` marks the whole graph's inputs (the regions' inputs are intermediates)."""
    def call(*args: Any) -> Tensor:
        for i in positions:
            if i < len(args) and args[i] is not None and args[i].shape[1] > 1:
                torch._dynamo.mark_dynamic(args[i], 1)
        return fn(*args)
    return call


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def write_checkpoint(blob: dict[str, Any], path: Path) -> None:
    """Write a `PackTrainer.checkpoint_blob` to path atomically (temporary file, then rename): a
    kill at any moment leaves the previous checkpoint or this one, never a partial file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, tmp)
    os.replace(tmp, path)


def precompile_together(trainers: Sequence[PackTrainer]) -> None:
    """`PackTrainer.precompile` for several packs in one parallel compile (packs of other batch
    sizes need some kernels of their own: other launch constants)."""
    kernels.compile_all([r for t in trainers for r in t.kernel_launches()])


def capture_steps(trainers: Sequence[PackTrainer]) -> torch.cuda.CUDAGraph:
    """One CUDA graph holding one step of each trainer (each warmed up, `PackTrainer.warm_up`): the
    first on the capturing stream, every other on a stream of its own forked from it and joined
    back, so a replay steps every pack once and their kernels may run side by side. Capturing runs
    nothing; the state is restored anyway, provably untouched."""
    snaps = [t._snapshot() for t in trainers]
    streams = [torch.cuda.Stream() for _ in trainers[1:]]
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        main = torch.cuda.current_stream()
        for st in streams:
            st.wait_stream(main)
        for st, t in zip(streams, trainers[1:]):
            with torch.cuda.stream(st):
                t._step()
        trainers[0]._step()
        for st in streams:
            main.wait_stream(st)
    for t, snap in zip(trainers, snaps):
        t._restore(*snap)
    return g


def can_run_together(trainers: Sequence[PackTrainer], starts: Sequence[int]) -> bool:
    """Packs step in lockstep when they are on one device, with the same number of steps, from the
    same step (a resumed group whose checkpoints were written at different steps runs its packs one
    after the other), and either all capture their step in a CUDA graph (then one graph for all)
    or none does (eager steps, one pack's after the other's: no faster, but the same loop)."""
    return (len(trainers) > 1 and len({t.use_graph for t in trainers}) == 1 and len({t.device for t in trainers}) == 1
            and len({t.steps for t in trainers}) == 1 and len(set(starts)) == 1)


def run_together(trainers: Sequence[PackTrainer], checkpoints: Sequence[Path | None], *,
                 checkpoint_every: int = 1000, progress: bool = True,
                 stop_after: int | None = None) -> list[list[RunOutput]]:
    """Train packs side by side: where `can_run_together`, one CUDA graph replay steps all of them
    (`capture_steps`), so the GPU overlaps one pack's kernels with another's; otherwise one pack
    after the other, each its own graph (or eager on the CPU). Every pack evaluates, checkpoints
    (to its own `checkpoints` entry) and reports exactly as it would alone, with the same numbers:
    each step computes the same values whichever stream runs it. A pack's wall time is the wall
    time of the steps it shared. `stop_after` (tests only) raises KeyboardInterrupt once that many
    steps ran in this call. Returns each trainer's outputs, in order."""
    if len(checkpoints) != len(trainers):
        raise ValueError(f"run_together: {len(trainers)} trainers but {len(checkpoints)} checkpoint paths")
    several = len(trainers) > 1
    if several:
        precompile_together([t for t in trainers if t.use_graph])
    starts = [t.begin(ck, precompile=not several) for t, ck in zip(trainers, checkpoints)]
    jobs = list(zip(trainers, checkpoints, starts))
    groups = [jobs] if can_run_together(trainers, starts) else [[j] for j in jobs]
    ran = 0
    for group in groups:
        ran = _lockstep(group, checkpoint_every, progress, stop_after, ran)
    return [t.outputs() for t in trainers]


def _lockstep(jobs: list[tuple[PackTrainer, Path | None, int]], checkpoint_every: int, progress: bool,
              stop_after: int | None, ran: int) -> int:
    """Step the packs of `jobs` (same steps, same start) together to the end; returns `ran` plus
    the steps run here."""
    from tqdm.auto import tqdm

    ts = [t for t, _, _ in jobs]
    start, steps = jobs[0][2], ts[0].steps
    graph = capture_steps(ts) if ts[0].use_graph and start < steps else None
    # Creation to the first step: data to the device, compilation, graph capture, first evaluation
    # (packs one after the other: with the training of the packs before this one too).
    for t in ts:
        t.setup_time = time.perf_counter() - t._created
    bar = tqdm(total=steps, initial=start, disable=not progress, unit="step", leave=False,
               desc=" + ".join(f"B={t.c0.batch_size} K={t.k}" for t in ts))
    # The bar moves every step on the CPU, where a step of a phase pack takes seconds (every 50 steps
    # it showed 0/5000 for minutes); on CUDA, where a step takes milliseconds, every BAR_EVERY_CUDA
    # steps. Either way an update reads nothing back from the device.
    bar_every = BAR_EVERY_CUDA if ts[0].device.type == "cuda" else 1
    # Checkpoints: copied to the host here, written to disk by one thread in order while the
    # training goes on (measured on the CPU, ~0.1-0.2 s a write for a phase3a pack); every write
    # has finished when this function returns or raises.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyphase-checkpoint")
    writes: list[Future[None]] = []
    t0 = time.perf_counter()
    try:
        for s in range(start, steps):
            if graph is not None:
                graph.replay()
            else:
                for t in ts:
                    t.step()
            n = s + 1
            ran += 1
            due = [(t, ck) for t, ck, _ in jobs if t.end_of_step(n, ck, checkpoint_every)]
            if due:
                t0 = _add_wall(ts, t0)
                for w in writes:  # the previous checkpoints' writes: done by now, or raise their error
                    w.result()
                writes = [writer.submit(write_checkpoint, t.checkpoint_blob(), ck) for t, ck in due]
            if n % bar_every == 0 or n == steps:
                bar.update(n - bar.n)
            if stop_after is not None and ran >= stop_after:
                raise KeyboardInterrupt(f"stop_after={stop_after} (test hook)")
    finally:
        writer.shutdown(wait=True)
    for w in writes:
        w.result()
    bar.close()
    _add_wall(ts, t0)
    return ran


def _add_wall(trainers: Sequence[PackTrainer], t0: float) -> float:
    """Add the time since t0 (device work finished) to each trainer's wall time; returns now."""
    if trainers[0].device.type == "cuda":
        torch.cuda.synchronize(trainers[0].device)
    dt = time.perf_counter() - t0
    for t in trainers:
        t.wall += dt
    return time.perf_counter()


def train_pack(configs: Sequence["RunConfig"], corpus: "Corpus", *, device: str = "cpu",
               checkpoint: Path | None = None, checkpoint_every: int = 1000,
               progress: bool = True, precision: str = "auto", compile: bool | None = None,
               cuda_graph: bool | None = None, stop_after: int | None = None) -> list[RunOutput]:
    """Train configs that share a pack key as one packed model; resume from `checkpoint` if it
    holds this pack. Returns one RunOutput per config, in order."""
    trainer = PackTrainer(configs, corpus, device, precision=precision, compile=compile, cuda_graph=cuda_graph)
    return trainer.run(checkpoint=checkpoint, checkpoint_every=checkpoint_every, progress=progress,
                       stop_after=stop_after)
