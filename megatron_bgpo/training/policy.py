"""`Policy`: the one owner of the model on this rank.

Holds the model chunks (DDP-wrapped when training), the optimizer and LR schedule, the process
groups and the sampler denoiser over the same chunks. Built once, from a `TrainConfig` for training
(:meth:`Policy.for_training`) or from a checkpoint for tools (:meth:`Policy.from_checkpoint`). Verbs:
:meth:`generate`, :meth:`old_terms`, :meth:`update`, :meth:`save`, :meth:`load`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from megatron_bgpo.diffusion.sampler import Prompts, SampleOutput, SamplerConfig, generate
from megatron_bgpo.models.llada import LLaDAConfig, build_model_chunks, validate_layout
from megatron_bgpo.models.llada.denoiser import MegatronDenoiser
from megatron_bgpo.parallel import cpu_compat
from megatron_bgpo.parallel.ddp import wrap_ddp, zero_grads
from megatron_bgpo.parallel.distributed import ParallelConfig
from megatron_bgpo.parallel.groups import ParallelGroups
from megatron_bgpo.rl.microbatches import MicroBatch
from megatron_bgpo.rl.objectives import Objective, ObjectiveConfig
from megatron_bgpo.rl.update import UpdateStats, attach_policy_terms, policy_update
from megatron_bgpo.training import checkpoint as ckpt
from megatron_bgpo.training.config import CheckpointArgs, OptimArgs, TrainConfig
from megatron_bgpo.training.optimizer import build_optimizer, updates_per_step, use_distributed_optimizer


def _to_device(microbatches: Sequence[MicroBatch]) -> None:
    """Micro-batches are built on the CPU; the model's forward needs them where the model is."""
    device = cpu_compat.compute_device()
    for mb in microbatches:
        mb.to_(device)


class NonFiniteError(RuntimeError):
    """A loss or gradient was NaN/inf; the optimizer step was skipped (weights untouched)."""


class LogRatioMismatchError(RuntimeError):
    """Off-policy: in the first update after a rollout the old and current terms (same weights, same
    masks) differed, i.e. the forward pass is not deterministic; the ELBO weight (up to 1/eps)
    amplifies such differences, so the run stops."""


def params_dtype(name: str) -> torch.dtype:
    """torch dtype of a ``--params-dtype`` value ("bf16" or "fp32")."""
    if name not in ("bf16", "fp32"):
        raise ValueError(f"--params-dtype must be bf16 or fp32, got {name!r}")
    return torch.bfloat16 if name == "bf16" else torch.float32


@torch.no_grad()
def jitter_weights(model: Sequence[torch.nn.Module], std: float, seed: int) -> None:
    """Add N(0, std^2) to every weight (a perturbed-numerics check of a recipe's robustness).

    Drawn from one generator seeded alike on every rank, in parameter order, so weights replicated
    across TP/DP ranks (norms, all of them under DP) receive identical noise.
    """
    gen = torch.Generator().manual_seed(seed + 7919)
    for chunk in model:
        for p in chunk.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.device, p.dtype) * std)


class Policy:
    """LLaDA on this rank: ``model`` (chunks, one per virtual stage; DDP-wrapped when trainable),
    ``optimizer``/``scheduler`` (None for inference), ``groups`` and ``denoiser``."""

    def __init__(
        self,
        model: list[torch.nn.Module],
        model_cfg: LLaDAConfig,
        groups: ParallelGroups,
        optimizer=None,
        scheduler=None,
        clip_grad: float = 0.0,
    ) -> None:
        self.model = model
        self.model_cfg = model_cfg
        self.groups = groups
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.clip_grad = clip_grad
        self.logprob_chunk_rows = 1024  # --logprob-chunk-size (rl/update.py)
        self.denoiser = MegatronDenoiser(model, model_cfg, groups=groups)

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        model_cfg: LLaDAConfig,
        parallel: ParallelConfig,
        groups: ParallelGroups,
        dtype: torch.dtype,
        use_te: bool | None = None,
        optim: OptimArgs | None = None,
        total_updates: tuple[int, int] = (1, 1),
        ddp: bool | None = None,
        transformer_overrides: dict | None = None,
    ) -> Policy:
        """Randomly initialised chunks at ``parallel``; with ``optim`` also DDP, optimizer and an LR
        schedule over ``total_updates`` = (train steps, optimizer updates per step). ``ddp`` (default:
        with ``optim``) wraps in megatron DDP, so :meth:`gradients` works without an optimizer.
        ``transformer_overrides``: extra TransformerConfig fields (activation recomputation)."""
        validate_layout(model_cfg, parallel)
        overrides = dict(params_dtype=dtype, use_te=use_te, **(transformer_overrides or {}))
        chunks = build_model_chunks(model_cfg, parallel, groups.pgs, **overrides)
        if not (optim is not None if ddp is None else ddp):
            return cls(chunks, model_cfg, groups)
        distributed_optimizer = optim is not None and use_distributed_optimizer(optim)
        model = wrap_ddp(chunks, use_distributed_optimizer=distributed_optimizer)
        if optim is None:
            return cls(model, model_cfg, groups)
        optimizer, scheduler = build_optimizer(optim, model, dtype, *total_updates)
        return cls(model, model_cfg, groups, optimizer, scheduler, clip_grad=optim.clip_grad)

    @classmethod
    def for_training(cls, cfg: TrainConfig, model_cfg: LLaDAConfig, groups: ParallelGroups) -> Policy:
        """The trainable policy of a run (weights still random: :meth:`load` restores them)."""
        policy = cls.build(
            model_cfg,
            cfg.parallel,
            groups,
            params_dtype(cfg.model.params_dtype),
            use_te=cfg.model.use_te,
            optim=cfg.optim,
            total_updates=(cfg.train_steps, updates_per_step(cfg)),
            transformer_overrides=cfg.model.transformer_overrides(),
        )
        policy.logprob_chunk_rows = cfg.model.logprob_chunk_size
        return policy

    @classmethod
    def from_checkpoint(
        cls, load: str | Path, parallel: ParallelConfig, groups: ParallelGroups, dtype: torch.dtype
    ) -> Policy:
        """Inference policy with the weights of checkpoint ``load`` (saved at any TP/PP)."""
        from megatron_bgpo.checkpointing.megatron_io import load_model_checkpoint, read_checkpoint_config

        policy = cls.build(read_checkpoint_config(load), parallel, groups, dtype)
        load_model_checkpoint(policy.model, load)
        return policy

    # ---- verbs -------------------------------------------------------------------------------------
    def generate(
        self, prompts: Prompts, sampler: SamplerConfig, seed: int, row_ids: torch.Tensor | None = None
    ) -> SampleOutput:
        """Sample completions of ``prompts`` (rows seeded by (seed, row id)); collective over TP/PP."""
        device = cpu_compat.compute_device()
        out = generate(
            self.denoiser,
            prompts.to(device),
            sampler,
            seed=seed,
            row_ids=None if row_ids is None else row_ids.to(device),
            vocab=self.denoiser.vocab_shard(),
            pipeline=self.denoiser.pipeline_comm(),
        )
        return SampleOutput(out.tokens.cpu(), out.trace.cpu(), out.lengths.cpu(), out.nfe)

    def old_terms(self, minibatches: Sequence[Sequence[MicroBatch]], objective: Objective) -> None:
        """Store the current weights' terms in each micro-batch's ``old_terms`` (same seeded masks)."""
        for mbs in minibatches:
            _to_device(mbs)
            attach_policy_terms(
                self.model, mbs, objective, self.groups.tp, logprob_chunk_rows=self.logprob_chunk_rows
            )

    def update(
        self,
        microbatches: Sequence[MicroBatch],
        objective: Objective,
        objective_cfg: ObjectiveConfig,
        where: str,
        expect_zero_log_ratio: bool = False,
    ) -> tuple[float, float, dict[str, float]]:
        """One optimizer step: accumulate gradients over ``microbatches``, then step; raise (weights
        untouched) on a non-finite loss/gradient on any rank. ``where`` names the update in errors.

        Returns (loss summed over replicas, pre-clip grad norm, objective stats of this rank).
        """
        g = self.groups
        zero_grads(self.model, self.optimizer)
        _to_device(microbatches)
        stats = policy_update(
            self.model, microbatches, objective, objective_cfg, g.tp, expect_zero_log_ratio,
            logprob_chunk_rows=self.logprob_chunk_rows,
        )  # fmt: skip
        if expect_zero_log_ratio and g.any_rank(bool(stats.log_ratio_mismatches)):
            zero_grads(self.model, self.optimizer)
            detail = " | ".join(stats.log_ratio_mismatches) or "on another rank"
            raise LogRatioMismatchError(
                f"{where}: old and current terms of the same weights and masks differ (d_j must be exactly "
                f"0; the forward pass is not deterministic), rank {_rank()}: {detail}"
            )
        local_loss = stats.loss
        bad = not math.isfinite(local_loss) or not all(
            torch.isfinite(p.main_grad).all() for m in self.model for p in m.parameters() if p.requires_grad
        )
        if g.any_rank(bad):
            zero_grads(self.model, self.optimizer)
            raise NonFiniteError(
                f"non-finite loss or gradient at {where} (rank {_rank()} loss {local_loss}); "
                "optimizer step skipped, weights unchanged"
            )
        ok, grad_norm, _ = self.optimizer.step()
        self.scheduler.step(increment=1)
        if not ok:
            raise NonFiniteError(f"optimizer reported a failed step at {where}; weights unchanged")
        if self.clip_grad <= 0:  # megatron-core computes the norm only when it clips
            grad_norm = self.optimizer.get_grad_norm()
        return g.replica_sum(local_loss, loss_rank=True), float(grad_norm or 0.0), stats.extra

    def gradients(
        self,
        microbatches: Sequence[MicroBatch],
        objective: Objective,
        objective_cfg: ObjectiveConfig,
        expect_zero_log_ratio: bool = False,
    ) -> UpdateStats:
        """Zero the gradient buffers, then forward + backward every micro-batch: the batch loss's
        gradient (summed over micro-batches and DP replicas) lands in each parameter's ``main_grad``."""
        zero_grads(self.model, self.optimizer)
        _to_device(microbatches)
        return policy_update(
            self.model, microbatches, objective, objective_cfg, self.groups.tp, expect_zero_log_ratio,
            logprob_chunk_rows=self.logprob_chunk_rows,
        )  # fmt: skip

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def jitter(self, std: float, seed: int) -> None:
        jitter_weights(self.model, std, seed)
        if self.optimizer is not None:  # refresh the fp32 main weights (bf16, distributed optimizer)
            self.optimizer.reload_model_params()

    def load(self, args: CheckpointArgs, folder: Path | None) -> ckpt.Progress:
        """Restore ``--load`` (weights, and optimizer/scheduler/RNG unless weights-only or --finetune)."""
        return ckpt.load(args, self.model, self.optimizer, self.scheduler, folder)

    def save(self, cfg: TrainConfig, step: int, tokenizer, progress: ckpt.Progress) -> Path:
        """Full training checkpoint of iteration ``step`` under ``--save``; collective."""
        return ckpt.save(
            cfg, step, self.model, self.optimizer, self.scheduler, self.model_cfg, tokenizer, progress
        )


def _rank() -> int:
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def load_for_inference(
    load: str, tokenizer_path: str | None, parallel: ParallelConfig, dtype_name: str = "bf16", seed: int = 0
):
    """Initialise distributed state and load checkpoint ``load`` at ``parallel`` for generation.

    Returns (Tokenizer, Policy). bf16 is used only with CUDA (fp32 on CPU, with a warning).
    """
    from megatron_bgpo.checkpointing.megatron_io import read_checkpoint_config
    from megatron_bgpo.parallel import init_distributed, parallel_groups, set_seed
    from megatron_bgpo.tokenizer import load_tokenizer

    env = init_distributed()
    groups = parallel_groups(parallel, env)
    set_seed(seed)  # also seeds megatron's model-parallel RNG tracker, which the forward uses
    model_cfg = read_checkpoint_config(load)  # first: a bad --load is named as such, not as a tokenizer
    tokenizer = load_tokenizer(tokenizer_path or load)
    tokenizer.check_model_vocab(model_cfg.embedding_size)
    dtype = cpu_compat.inference_dtype(params_dtype(dtype_name))
    return tokenizer, Policy.from_checkpoint(load, parallel, groups, dtype)
