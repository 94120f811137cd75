"""The RL training run, top to bottom: setup, then per step rollout -> advantages -> updates -> log /
eval / checkpoint. The model and its optimizer live in `Policy` (training/policy.py); each phase lives
in the module named for it (rollout.py, evaluation.py, metrics.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from megatron_bgpo.parallel import destroy_model_parallel, init_distributed, parallel_groups, set_seed
from megatron_bgpo.rl.microbatches import MicroBatch, PackingConfig, build_microbatches
from megatron_bgpo.rl.objectives import get_objective
from megatron_bgpo.tasks import get_task
from megatron_bgpo.training import checkpoint as ckpt
from megatron_bgpo.training.config import TrainConfig, check_world
from megatron_bgpo.training.data import PromptSource
from megatron_bgpo.training.evaluation import Evaluator
from megatron_bgpo.training.logging import MetricsLogger, peak_memory_mib
from megatron_bgpo.training.metrics import grad_metrics, rl_step_metrics
from megatron_bgpo.training.policy import LogRatioMismatchError, NonFiniteError, Policy, params_dtype
from megatron_bgpo.training.resources import load_examples, resolve_model, resolve_tokenizer
from megatron_bgpo.training.rollout import Rollout, encode_prompts, split_minibatches
from megatron_bgpo.training.sft import sft_batch

__all__ = ["LogRatioMismatchError", "NonFiniteError", "NonFiniteRunError", "StepResult", "Trainer", "main"]


class NonFiniteRunError(RuntimeError):
    """``--max-skipped-steps`` consecutive steps were skipped; the run stops without saving."""


@dataclass
class StepResult:
    step: int
    metrics: dict[str, float]


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg, rl = cfg, cfg.rl
        self.env = init_distributed()
        self.groups = parallel_groups(cfg.parallel, self.env)
        set_seed(cfg.seed)
        check_world(cfg, self.env.world_size)
        load_folder = ckpt.resolve_load(cfg.checkpoint)  # verified (or --load-fallback) before anything else
        model_cfg = resolve_model(cfg)
        if cfg.checkpoint.save:
            size = ckpt.checkpoint_bytes(model_cfg, params_dtype(cfg.model.params_dtype))
            ckpt.check_save_dir(cfg.checkpoint.save, size)
        self.tokenizer = tok = resolve_tokenizer(cfg)
        tok.check_model_vocab(model_cfg.embedding_size)
        self.policy = Policy.for_training(cfg, model_cfg, self.groups)
        self.progress = self.policy.load(cfg.checkpoint, load_folder)
        self.step = self.progress.step
        if cfg.model.init_jitter > 0:
            self.policy.jitter(cfg.model.init_jitter, cfg.seed)
        self.objective = get_objective(rl.objective)
        self.objective_cfg = rl.objective_config()
        self.masking = rl.masking_spec(tok.eos_id)
        self.task = get_task(cfg.data.task)
        examples = load_examples(self.task, cfg.data.train_data, "train", cfg.seed)
        overfit = cfg.data.overfit_batch
        self.train_source = PromptSource(examples, rl.rollout_batch_size, seed=cfg.seed, fixed=overfit)
        g, log, sampler = cfg.generation, cfg.logging, cfg.generation.sampler(tok)
        self.rollout = Rollout(tok, self.task, sampler, rl, g.max_prompt_length, cfg.seed, self.groups)
        if overfit:  # evaluate on the very prompts the run trains on
            eval_examples = self.train_source.batch(0)
        else:
            eval_examples = load_examples(self.task, cfg.data.eval_data, "test", cfg.seed)
            eval_examples = eval_examples[: cfg.data.eval_samples]
        self.evaluate = Evaluator(tok, self.task, eval_examples, sampler, cfg)
        jsonl = f"{cfg.checkpoint.save}/metrics.jsonl" if cfg.checkpoint.save else None
        self.logger = MetricsLogger(
            cfg.train_steps, log.tensorboard_dir, log.wandb_project, jsonl_path=jsonl, config=cfg.to_dict()
        )

    # ---- one step ----------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        rl, policy, t0 = self.cfg.rl, self.policy, time.perf_counter()
        examples, positions = self.train_source.shard(step, self.groups.dp_rank, self.groups.dp_size)
        if self.objective.supervised:
            return self._sft_step(step, examples, positions)
        gen = self.rollout.generate(policy, examples, positions, step)
        scores = self.rollout.score(gen)
        batch = self.rollout.batch(gen, scores)  # group advantages, loss weights
        t_update = time.perf_counter()
        minibatches = [
            build_microbatches(sub, self.objective, self._packing(step, u))
            for u, sub in enumerate(split_minibatches(batch, scores.informative, rl))
        ]
        if not rl.on_policy:  # old-policy terms once per rollout batch, same seeded masks
            policy.old_terms(minibatches, self.objective)
        updates = [  # the first off-policy update must see old == current terms exactly
            policy.update(
                mbs,
                self.objective,
                self.objective_cfg,
                f"step {step + 1} update {u + 1}",
                expect_zero_log_ratio=not rl.on_policy and u == 0,
            )
            for u, mbs in enumerate(minibatches)
        ]
        return rl_step_metrics(
            gen,
            scores,
            updates,
            rollout_s=t_update - t0,
            update_s=time.perf_counter() - t_update,
            lr=policy.lr,
            clip_grad=self.cfg.optim.clip_grad,
            groups=self.groups,
            ppo_clip=rl.objective in ("diffu_grpo", "just_grpo"),
        )

    def _packing(self, step: int, iteration: int = 0) -> PackingConfig:
        """MC packing of step ``step``'s update ``iteration``: masks seeded by (seed + step, uid, j)."""
        rl = self.cfg.rl
        return PackingConfig(
            rl.num_mc_samples,
            rl.micro_batch_size,
            self.masking,
            seed=self.cfg.seed + step,
            mask_id=self.tokenizer.mask_id,
            iteration=iteration,
            ar_block_length=rl.ar_block_length,
        )

    def _sft_step(self, step: int, examples, positions) -> dict[str, float]:
        t0 = time.perf_counter()
        mbs = self.sft_microbatches(step, examples, positions)
        loss, gnorm, _ = self.policy.update(mbs, self.objective, self.objective_cfg, f"SFT step {step + 1}")
        return {
            "loss": loss,
            **grad_metrics([gnorm], self.cfg.optim.clip_grad),
            "lr": self.policy.lr,
            "update_s": time.perf_counter() - t0,
            "peak_mem_mib": peak_memory_mib(),
        }

    def sft_microbatches(self, step: int, examples, positions) -> list[MicroBatch]:
        """The MC micro-batches of SFT step ``step`` for this rank's ``examples`` (reference canvases,
        masks seeded by (seed + step, uid))."""
        cfg, texts = self.cfg, [self.task.prompt_text(ex) for ex in examples]
        prompts = encode_prompts(self.tokenizer, texts, cfg.generation.max_prompt_length)
        uids = step * cfg.rl.rollout_batch_size + torch.as_tensor(positions)
        batch = sft_batch(
            self.tokenizer,
            prompts,
            self.task,
            examples,
            cfg.generation.gen_length,
            uids,
            cfg.rl.rollout_batch_size,
        )
        return build_microbatches(batch, self.objective, self._packing(step))

    # ---- the loop ----------------------------------------------------------------------------------
    def _log_eval(self, step: int) -> None:
        """Evaluate; metrics to the logger, per-example rewards to ``eval_rewards.jsonl``."""
        metrics, rewards = self.evaluate(self.policy)
        self.logger.log(step, metrics, prefix="eval")
        for kind, values in rewards.items():
            self.logger.log_rewards(step, kind, values)

    def run(self) -> list[StepResult]:
        cfg, log, results = self.cfg, self.cfg.logging, []
        try:
            if log.eval_interval and log.eval_at_start and self.step < cfg.train_steps:
                self._log_eval(self.step - 1)
            for step in range(self.step, cfg.train_steps):
                metrics = self._guarded_step(step)
                self.step = self.progress.step = step + 1
                results.append(StepResult(step, metrics))
                last = step + 1 == cfg.train_steps
                if log.log_interval and (step + 1) % log.log_interval == 0:
                    self.logger.log(step, metrics)
                if log.eval_interval and ((step + 1) % log.eval_interval == 0 or last):
                    self._log_eval(step)
                interval = cfg.checkpoint.save_interval
                if cfg.checkpoint.save and (last or (interval and (step + 1) % interval == 0)):
                    self.policy.save(cfg, self.step, self.tokenizer, self.progress)
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


def main(argv: list[str] | None = None) -> list[StepResult]:
    from megatron_bgpo.cli import exit_on_bad_input
    from megatron_bgpo.training.config import parse_args

    with exit_on_bad_input(NonFiniteRunError):
        results = Trainer(parse_args(argv)).run()
    destroy_model_parallel()
    return results
