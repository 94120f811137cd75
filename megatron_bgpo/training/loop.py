"""The RL training run, top to bottom: setup, then per step rollout -> advantages -> updates -> log /
eval / checkpoint. Everything it calls lives in the package folder named for that concern."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from megatron.core import parallel_state as ps

from megatron_bgpo.diffusion.sampler import SamplerConfig
from megatron_bgpo.models.llada import build_model_chunks, validate_layout
from megatron_bgpo.models.llada.denoiser import MegatronDenoiser
from megatron_bgpo.models.llada.inference import decode_outputs
from megatron_bgpo.parallel import init_distributed, initialize_model_parallel, set_seed
from megatron_bgpo.parallel.ddp import wrap_ddp, zero_grads
from megatron_bgpo.rl.microbatches import PackingConfig, build_microbatches
from megatron_bgpo.rl.objectives import ObjectiveConfig, get_objective
from megatron_bgpo.rl.update import attach_policy_terms, policy_update
from megatron_bgpo.tasks import gather_scores, get_task
from megatron_bgpo.training import checkpoint as ckpt
from megatron_bgpo.training.config import TrainConfig, check_world
from megatron_bgpo.training.data import PromptSource
from megatron_bgpo.training.logging import MetricsLogger, peak_memory_mib
from megatron_bgpo.training.optimizer import build_optimizer, updates_per_step, use_distributed_optimizer
from megatron_bgpo.training.resources import load_examples, resolve_model, resolve_tokenizer
from megatron_bgpo.training.rollout import encode_prompts, run_rollout
from megatron_bgpo.training.sft import sft_batch


@torch.no_grad()
def jitter_weights(model, std: float, seed: int) -> None:
    """Add N(0, std^2) to every weight (a perturbed-numerics check of a recipe's robustness).

    Drawn from one generator seeded alike on every rank, in parameter order, so weights replicated
    across TP/DP ranks (norms, all of them under DP) receive identical noise.
    """
    gen = torch.Generator().manual_seed(seed + 7919)
    for chunk in model:
        for p in chunk.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float32).to(p.device, p.dtype) * std)


class NonFiniteError(RuntimeError):
    """A loss or gradient was NaN/inf; the optimizer step was skipped (weights untouched)."""


class LogRatioMismatchError(RuntimeError):
    """Off-policy: in the first update after a rollout the old and current terms (same weights, same
    masks) differed, i.e. the forward pass is not deterministic; the ELBO weight (up to 1/eps)
    amplifies such differences, so the run stops."""


class NonFiniteRunError(RuntimeError):
    """``--max-skipped-steps`` consecutive steps were skipped; the run stops without saving."""


@dataclass
class StepResult:
    step: int
    metrics: dict[str, float]


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.env = init_distributed()
        initialize_model_parallel(cfg.parallel)
        set_seed(cfg.seed)
        self.dp_group = ps.get_data_parallel_group()
        self.dp_size, self.dp_rank = check_world(cfg, self.env.world_size), ps.get_data_parallel_rank()
        load_folder = ckpt.resolve_load(cfg.checkpoint)  # verified (or --load-fallback) before anything else
        self.model_cfg = resolve_model(cfg)
        validate_layout(self.model_cfg, cfg.parallel)
        self.params_dtype = torch.bfloat16 if cfg.model.params_dtype == "bf16" else torch.float32
        if cfg.checkpoint.save:
            ckpt.check_save_dir(cfg.checkpoint.save, ckpt.checkpoint_bytes(self.model_cfg, self.params_dtype))
        self.tokenizer = resolve_tokenizer(cfg)
        self.tokenizer.check_model_vocab(self.model_cfg.embedding_size)
        chunks = build_model_chunks(
            self.model_cfg,
            cfg.parallel,
            params_dtype=self.params_dtype,
            use_te=cfg.model.use_te,
            calculate_per_token_loss=True,
        )
        self.model = wrap_ddp(chunks, use_distributed_optimizer=use_distributed_optimizer(cfg.optim))
        self.optimizer, self.scheduler = build_optimizer(
            cfg.optim, self.model, self.params_dtype, cfg.train_steps, updates_per_step(cfg)
        )
        self.progress = ckpt.load(cfg.checkpoint, self.model, self.optimizer, self.scheduler, load_folder)
        self.step = self.progress.step
        if cfg.model.init_jitter > 0:
            jitter_weights(self.model, cfg.model.init_jitter, cfg.seed)
        self.objective = get_objective(cfg.rl.objective)
        self.objective_cfg = ObjectiveConfig(
            num_mc_samples=cfg.rl.num_mc_samples,
            bound=cfg.rl.bound,
            max_log_ratio=cfg.rl.max_log_ratio,
            clip_eps=cfg.rl.clip_eps,
            kl_beta=cfg.rl.kl_beta,
        )
        self.masking = cfg.rl.masking_spec(self.tokenizer.eos_id)
        self.task = get_task(cfg.data.task)
        self.train_source = PromptSource(
            load_examples(self.task, cfg.data.train_data, "train", cfg.seed),
            cfg.rl.rollout_batch_size,
            seed=cfg.seed,
        )
        self.eval_examples = load_examples(self.task, cfg.data.eval_data, "test", cfg.seed)[
            : cfg.data.eval_samples
        ]
        self.denoiser = MegatronDenoiser(self.model, self.model_cfg)
        g = cfg.generation
        self.sampler = SamplerConfig(
            gen_length=g.gen_length,
            steps=g.diffusion_steps,
            block_length=g.block_length,
            temperature=g.temperature,
            remasking=g.remasking,
            cfg_scale=g.cfg_scale,
            mask_id=self.tokenizer.mask_id,
            eos_id=self.tokenizer.eos_id,
            stop_ids=(self.tokenizer.eot_id,),
        )
        self.logger = MetricsLogger(
            cfg.train_steps,
            cfg.logging.tensorboard_dir,
            cfg.logging.wandb_project,
            jsonl_path=f"{cfg.checkpoint.save}/metrics.jsonl" if cfg.checkpoint.save else None,
            config=cfg.to_dict(),
        )

    # ---- one RL step -----------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        cfg, rl = self.cfg, self.cfg.rl
        examples, positions = self.train_source.shard(step, self.dp_rank, self.dp_size)
        if self.objective.supervised:
            return self._sft_step(step, examples, positions)
        rollout = run_rollout(
            denoiser=self.denoiser,
            tokenizer=self.tokenizer,
            task=self.task,
            examples=examples,
            positions=positions,
            step=step,
            sampler=self.sampler,
            group_size=rl.group_size,
            global_prompts=rl.rollout_batch_size,
            max_prompt_length=cfg.generation.max_prompt_length,
            seed=cfg.seed,
            dp_group=self.dp_group,
            advantage_eps=rl.advantage_eps,
            normalize_std=rl.std_normalized_advantages,
        )
        t_update = time.perf_counter()
        local_prompts = len(examples)
        per_update = local_prompts // rl.updates_per_rollout
        weight = 1.0 / (rl.group_size * rl.mini_batch_size)
        minibatches = []
        for u in range(rl.updates_per_rollout):
            prompt_rows = torch.arange(u * per_update, (u + 1) * per_update)
            if rl.drop_zero_variance_groups and rl.kl_beta == 0:
                prompt_rows = prompt_rows[rollout.informative[prompt_rows]]
            w = weight
            if len(prompt_rows) == 0:  # nothing informative: one zero-weight group keeps the schedule's
                prompt_rows, w = torch.arange(u * per_update, u * per_update + 1), 0.0  # collectives aligned
            rows = (prompt_rows[:, None] * rl.group_size + torch.arange(rl.group_size)).reshape(-1)
            sub = rollout.batch.select(rows)
            sub.loss_weight = torch.full((len(sub),), w, dtype=torch.float64)
            packing = PackingConfig(
                rl.num_mc_samples,
                rl.micro_batch_size,
                self.masking,
                seed=cfg.seed + step,
                mask_id=self.tokenizer.mask_id,
                iteration=u,
                ar_block_length=rl.ar_block_length,
            )
            minibatches.append(build_microbatches(sub, self.objective, packing))
        if not rl.on_policy:  # old-policy terms once per rollout batch, same seeded masks
            for mbs in minibatches:
                attach_policy_terms(self.model, mbs, self.objective, self._tp_group())
        losses, grad_norms, counts = [], [], {"overflow_guard": 0.0, "exp_rows": 0.0, "ppo_clipped": 0.0}
        for u, mbs in enumerate(minibatches):
            loss, gnorm, stats = self._optimizer_step(
                mbs,
                where=f"step {step + 1} update {u + 1}",
                expect_zero_log_ratio=not rl.on_policy and u == 0,
            )
            losses.append(loss)
            grad_norms.append(gnorm)
            for k in counts:
                counts[k] += stats.get(k, 0.0)
        counts = {k: self._sum(v, loss_rank=True) for k, v in counts.items()}
        t_done = time.perf_counter()
        rewards = rollout.global_rewards
        return {
            "reward_mean": rewards.mean().item(),
            "reward_std": rewards.std().item(),
            "accuracy": rollout.global_correct.double().mean().item(),
            "zero_variance_groups": rollout.zero_variance_fraction,
            "loss": sum(losses),
            **self._grad_metrics(grad_norms),
            "lr": self.optimizer.param_groups[0]["lr"],
            "rollout_s": rollout.seconds,
            "update_s": t_done - t_update,
            "gen_tokens_per_s": self._sum(rollout.generated_tokens) / max(rollout.seconds, 1e-9),
            "peak_mem_mib": peak_memory_mib(),
            "overflow_guard": counts["overflow_guard"],
            "clamp_fraction": counts["overflow_guard"] / max(counts["exp_rows"], 1.0),
            **(
                {"ppo_clip_fraction": counts["ppo_clipped"] / max(counts["exp_rows"], 1.0)}
                if rl.objective in ("diffu_grpo", "just_grpo")
                else {}
            ),
        }

    def _sft_step(self, step: int, examples, positions) -> dict[str, float]:
        t0 = time.perf_counter()
        loss, gnorm, _ = self._optimizer_step(
            self.sft_microbatches(step, examples, positions), where=f"SFT step {step + 1}"
        )
        return {
            "loss": loss,
            **self._grad_metrics([gnorm]),
            "lr": self.optimizer.param_groups[0]["lr"],
            "update_s": time.perf_counter() - t0,
            "peak_mem_mib": peak_memory_mib(),
        }

    def sft_microbatches(self, step: int, examples, positions) -> list:
        """The MC micro-batches of SFT step ``step`` for this rank's ``examples`` (reference canvases,
        masks seeded by (seed + step, uid))."""
        prompts = encode_prompts(
            self.tokenizer,
            [self.task.prompt_text(ex) for ex in examples],
            self.cfg.generation.max_prompt_length,
        )
        uids = step * self.cfg.rl.rollout_batch_size + torch.as_tensor(positions)
        batch = sft_batch(
            self.tokenizer,
            prompts,
            self.task,
            examples,
            self.cfg.generation.gen_length,
            uids,
            self.cfg.rl.rollout_batch_size,
        )
        packing = PackingConfig(
            self.cfg.rl.num_mc_samples,
            self.cfg.rl.micro_batch_size,
            self.masking,
            seed=self.cfg.seed + step,
            mask_id=self.tokenizer.mask_id,
        )
        return build_microbatches(batch, self.objective, packing)

    def _optimizer_step(
        self, microbatches, where: str, expect_zero_log_ratio: bool = False
    ) -> tuple[float, float, dict[str, float]]:
        """Accumulate gradients over ``microbatches`` and step; skip the step on a non-finite loss/grad.
        Returns (loss, pre-clip grad norm, objective stats summed over micro-batches)."""
        zero_grads(self.model, self.optimizer)
        stats = policy_update(
            self.model,
            microbatches,
            self.objective,
            self.objective_cfg,
            self._tp_group(),
            expect_zero_log_ratio,
        )
        if expect_zero_log_ratio and self._any_rank(bool(stats.log_ratio_mismatches)):
            zero_grads(self.model, self.optimizer)
            detail = " | ".join(stats.log_ratio_mismatches) or "on another rank"
            raise LogRatioMismatchError(
                f"{where}: old and current terms of the same weights and masks differ (d_j must be exactly "
                f"0; the forward pass is not deterministic), rank {self.env.rank}: {detail}"
            )
        local_loss = stats.loss
        bad = not math.isfinite(local_loss) or not all(
            torch.isfinite(p.main_grad).all() for m in self.model for p in m.parameters() if p.requires_grad
        )
        if self._any_rank(bad):
            zero_grads(self.model, self.optimizer)
            raise NonFiniteError(
                f"non-finite loss or gradient at {where} (rank {self.env.rank} loss {local_loss}); "
                "optimizer step skipped, weights unchanged"
            )
        ok, grad_norm, _ = self.optimizer.step()
        self.scheduler.step(increment=1)
        if not ok:
            raise NonFiniteError(f"optimizer reported a failed step at {where}; weights unchanged")
        if self.cfg.optim.clip_grad <= 0:  # megatron-core computes the norm only when it clips
            grad_norm = self.optimizer.get_grad_norm()
        return self._sum(local_loss, loss_rank=True), float(grad_norm or 0.0), stats.extra

    def _grad_metrics(self, grad_norms: list[float]) -> dict[str, float]:
        """Pre-clip gradient norm (megatron-core's optimizer.step returns the norm it clipped from) and
        the fraction of this step's updates that were clipped."""
        clip = self.cfg.optim.clip_grad
        clipped = sum(g > clip for g in grad_norms) if clip > 0 else 0
        return {"grad_norm": max(grad_norms), "grad_clipped_fraction": clipped / len(grad_norms)}

    # ---- evaluation, loop --------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out reward and accuracy: greedy, or sampled at --eval-temperature with
        --eval-samples-per-prompt completions per prompt (then the greedy numbers are logged beside).
        Per-example rewards go to ``eval_rewards.jsonl`` (kinds ``sampled`` and ``greedy``)."""
        log = self.cfg.logging
        greedy = self._eval_pass(step, "greedy", 0.0, 1)
        if log.eval_temperature == 0:
            return greedy
        return {
            **self._eval_pass(step, "sampled", log.eval_temperature, log.eval_samples_per_prompt),
            **{f"greedy_{k}": v for k, v in greedy.items()},
        }

    def _eval_pass(self, step: int, kind: str, temperature: float, k: int) -> dict[str, float]:
        from megatron_bgpo.diffusion.sampler import generate

        per = math.ceil(len(self.eval_examples) / self.dp_size)
        shard = self.eval_examples[self.dp_rank * per : (self.dp_rank + 1) * per] or self.eval_examples[:1]
        shard = [ex for ex in shard for _ in range(k)]
        prompts = encode_prompts(
            self.tokenizer, [self.task.prompt_text(ex) for ex in shard], self.cfg.generation.max_prompt_length
        )
        out = generate(
            self.denoiser,
            prompts,
            self.sampler.with_(
                temperature=temperature,
                gen_length=self.cfg.generation.eval_length,
                steps=self.cfg.generation.eval_steps,
            ),
            seed=self.cfg.seed,  # the same noise at every evaluation: the evaluations of a run are paired
            row_ids=self.dp_rank * per * k + torch.arange(len(shard)),
            vocab=self.denoiser.vocab_shard(),
            pipeline=self.denoiser.pipeline_comm(),
        )
        texts = decode_outputs(self.tokenizer, out)
        mp_group = ps.get_model_parallel_group()  # score once per replica, broadcast to its TP/PP ranks
        scores = gather_scores(self.task, texts, shard, group=self.dp_group, mp_group=mp_group)
        per_example = [sum(s.reward for s in scores[i : i + k]) / k for i in range(0, len(scores), k)]
        self.logger.log_rewards(step, kind, per_example)
        return {
            "reward_mean": sum(s.reward for s in scores) / len(scores),
            "accuracy": sum(s.correct for s in scores) / len(scores),
        }

    def run(self) -> list[StepResult]:
        cfg, results = self.cfg, []
        try:
            if cfg.logging.eval_interval and cfg.logging.eval_at_start and self.step < cfg.train_steps:
                self.logger.log(self.step - 1, self.evaluate(self.step - 1), prefix="eval")
            for step in range(self.step, cfg.train_steps):
                metrics = self._guarded_step(step)
                self.step = self.progress.step = step + 1
                results.append(StepResult(step, metrics))
                if cfg.logging.log_interval and (step + 1) % cfg.logging.log_interval == 0:
                    self.logger.log(step, metrics)
                if cfg.logging.eval_interval and (
                    (step + 1) % cfg.logging.eval_interval == 0 or step + 1 == cfg.train_steps
                ):
                    self.logger.log(step, self.evaluate(step), prefix="eval")
                if cfg.checkpoint.save and (
                    step + 1 == cfg.train_steps
                    or (cfg.checkpoint.save_interval and (step + 1) % cfg.checkpoint.save_interval == 0)
                ):
                    ckpt.save(
                        cfg,
                        self.step,
                        self.model,
                        self.optimizer,
                        self.scheduler,
                        self.model_cfg,
                        self.tokenizer,
                        self.progress,
                    )
        finally:
            self.logger.close()
        return results

    def _guarded_step(self, step: int) -> dict[str, float]:
        """`train_step`, skipping a non-finite one; ``--max-skipped-steps`` in a row stop the run (before
        anything is saved). Metrics carry ``skipped_steps``, the run's total (kept across resumes)."""
        progress, limit = self.progress, self.cfg.optim.max_skipped_steps
        try:
            metrics = self.train_step(step)
            progress.skip_streak = 0
        except NonFiniteError as exc:
            progress.skipped_steps += 1
            progress.skip_streak += 1
            if progress.skip_streak >= limit:
                raise NonFiniteRunError(
                    f"{progress.skip_streak} consecutive steps (up to step {step + 1}) had a non-finite loss "
                    f"or gradient, last: {exc}. Stopped without saving (--max-skipped-steps {limit}); "
                    f"lower --lr (now {self.cfg.optim.lr:g}) or check the data, then resume from the last "
                    "checkpoint"
                ) from exc
            if self.env.rank == 0:
                print(f"warning: {exc} ({progress.skip_streak} in a row; {limit} stop the run)", flush=True)
            metrics = {"skipped": 1.0}
        metrics["skipped_steps"] = float(progress.skipped_steps)
        return metrics

    # ---- small helpers -----------------------------------------------------------------------------
    def _tp_group(self):
        return ps.get_tensor_model_parallel_group()

    def _any_rank(self, flag: bool) -> bool:
        t = torch.tensor([1.0 if flag else 0.0], device=self.env.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _sum(self, value: float, loss_rank: bool = False) -> float:
        """Sum over data-parallel replicas, counting one rank per replica: the last pipeline stage's TP rank 0
        for losses (only it computes them), the first stage's otherwise. The result is known on every rank."""
        stage_ok = ps.is_pipeline_last_stage() if loss_rank else ps.is_pipeline_first_stage()
        counted = stage_ok and ps.get_tensor_model_parallel_rank() == 0
        t = torch.tensor([float(value) if counted else 0.0], dtype=torch.float64, device=self.env.device)
        dist.all_reduce(t)
        return t.item()


def main(argv: list[str] | None = None) -> list[StepResult]:
    from megatron_bgpo.cli import exit_on_bad_input
    from megatron_bgpo.training.config import parse_args

    with exit_on_bad_input(NonFiniteRunError):
        trainer = Trainer(parse_args(argv))
        results = trainer.run()
    ps.destroy_model_parallel()
    dist.destroy_process_group()
    return results
