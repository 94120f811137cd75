"""Training configuration: typed dataclasses, Megatron-style flags, YAML recipes; validated once.

`parse_args(argv)` reads ``--config recipe.yaml`` first (keys are flag names with underscores),
then command-line flags override it; the result is a frozen `TrainConfig` whose ``__post_init__``
methods reject impossible settings with a message naming the flag.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from megatron_bgpo.parallel.distributed import ParallelConfig


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _at_least(owner: object, minimum: float, *names: str) -> None:
    """Each ``--name`` of ``owner`` must be >= ``minimum`` (and finite)."""
    for name in names:
        value = getattr(owner, name)
        flag = "--" + name.replace("_", "-")
        _check(math.isfinite(value) and value >= minimum, f"{flag} must be >= {minimum}, got {value}")


FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class ModelArgs:
    model: str = "tiny"  # preset name, HF config.json/folder, or a converted Megatron checkpoint folder
    params_dtype: str = "fp32"  # fp32 | bf16
    use_te: bool | None = None  # None: Transformer Engine when available
    init_jitter: float = 0.0  # std of Gaussian noise added to the weights after init/load (robustness)
    # Policy update: output-layer rows per chunk of the log-prob computation (only loss positions go
    # through the output layer; each chunk's [rows, V/TP] logits are recomputed in backward). 0: all at once.
    logprob_chunk_size: int = 1024
    # Activation recomputation (megatron-core's TransformerConfig fields; layers = hybrid sublayers, two
    # per LLaDA block): granularity full | selective, method uniform | block for full.
    recompute_granularity: str | None = None
    recompute_method: str | None = None
    recompute_num_layers: int | None = None

    def transformer_overrides(self) -> dict[str, Any]:
        """The recomputation settings as TransformerConfig keyword arguments (only those given)."""
        names = ("recompute_granularity", "recompute_method", "recompute_num_layers")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def __post_init__(self) -> None:
        _check(
            self.params_dtype in ("fp32", "bf16"),
            f"--params-dtype must be fp32 or bf16, got {self.params_dtype}",
        )
        _check(self.init_jitter >= 0, f"--init-jitter must be >= 0, got {self.init_jitter}")
        _check(
            self.logprob_chunk_size >= 0, f"--logprob-chunk-size must be >= 0, got {self.logprob_chunk_size}"
        )
        _check(
            self.recompute_granularity in (None, "full", "selective"),
            f"--recompute-granularity must be full or selective, got {self.recompute_granularity!r}",
        )
        full = self.recompute_granularity == "full"
        _check(
            (self.recompute_method in ("uniform", "block")) == full
            and (self.recompute_num_layers or 0) >= int(full),
            "--recompute-granularity full needs --recompute-method uniform|block and --recompute-num-layers "
            f">= 1 (and only then), got method {self.recompute_method!r}, layers {self.recompute_num_layers}",
        )


@dataclass(frozen=True)
class RLArgs:
    objective: str = "bgpo"
    num_mc_samples: int = 16  # n_t
    group_size: int = 8  # G responses per prompt
    rollout_batch_size: int = 16  # prompts per step (global)
    mini_batch_size: int = 16  # prompts per optimizer update; == rollout_batch_size is on-policy
    micro_batch_size: int = 4  # canvases per micro-batch (mc_sample objectives) or responses
    masking_mode: str = "continuous"  # continuous (1/t) | discrete (L/l)
    masking_eps: float = 1e-3
    elbo_tokens: str = "canvas"  # canvas (incl. EOS padding) | first_eos
    mc_t_sampling: str = "stratified"  # stratified (t_j in [j/n_t, (j+1)/n_t)) | iid (U[0,1] per sample)
    mc_coupling: str = "independent"  # independent | complementary (pairs of complementary masks)
    ar_block_length: int = 1  # just_grpo: response tokens scored per pass (1 = JustGRPO)
    bound: str = "both"  # BGPO: both | taylor | jensen
    max_log_ratio: float = 20.0
    clip_eps: float | None = None
    kl_beta: float = 0.0
    advantage_eps: float = 1e-6
    advantage_std_normalize: bool | None = None  # None: False for diffu_grpo (d1: r - mean), else True
    drop_zero_variance_groups: bool = True

    def __post_init__(self) -> None:
        from megatron_bgpo.rl.objectives import OBJECTIVES

        _check(
            self.objective in OBJECTIVES,
            f"--objective {self.objective!r} unknown; choose from {sorted(OBJECTIVES)}",
        )
        _check(self.num_mc_samples >= 1, f"--num-mc-samples must be >= 1, got {self.num_mc_samples}")
        _check(self.group_size >= 2, f"--group-size must be >= 2 for group advantages, got {self.group_size}")
        _check(self.micro_batch_size >= 1, f"--micro-batch-size must be >= 1, got {self.micro_batch_size}")
        _check(
            self.mini_batch_size >= 1 and self.rollout_batch_size % self.mini_batch_size == 0,
            f"--rollout-batch-size ({self.rollout_batch_size}) must be a multiple of --mini-batch-size "
            f"({self.mini_batch_size})",
        )
        _at_least(self, 0.0, "kl_beta", "advantage_eps")
        _check(
            self.kl_beta == 0,
            f"--kl-beta {self.kl_beta} is not supported: training keeps no frozen reference model, so "
            "nothing computes the KL term's reference ELBO terms; use --kl-beta 0 (the default, as BGPO)",
        )
        _check(0 < self.masking_eps < 1, f"--masking-eps must be in (0, 1), got {self.masking_eps}")
        _check(self.max_log_ratio > 0, f"--max-log-ratio must be > 0, got {self.max_log_ratio}")
        _check(self.masking_mode in ("continuous", "discrete"), f"--masking-mode: {self.masking_mode!r}")
        _check(self.elbo_tokens in ("canvas", "first_eos"), f"--elbo-tokens: {self.elbo_tokens!r}")
        _check(
            self.mc_t_sampling in ("stratified", "iid"),
            f"--mc-t-sampling must be stratified or iid, got {self.mc_t_sampling!r}",
        )
        _check(
            self.mc_coupling in ("independent", "complementary"),
            f"--mc-coupling must be independent or complementary, got {self.mc_coupling!r}",
        )
        _check(
            self.mc_coupling == "independent" or self.num_mc_samples % 2 == 0,
            f"--mc-coupling complementary needs an even --num-mc-samples, got {self.num_mc_samples}",
        )
        _check(self.ar_block_length >= 1, f"--ar-block-length must be >= 1, got {self.ar_block_length}")

    @property
    def updates_per_rollout(self) -> int:
        return self.rollout_batch_size // self.mini_batch_size

    @property
    def on_policy(self) -> bool:
        return self.updates_per_rollout == 1

    @property
    def std_normalized_advantages(self) -> bool:
        if self.advantage_std_normalize is None:
            return self.objective != "diffu_grpo"
        return self.advantage_std_normalize

    def masking_spec(self, eos_id: int):
        """The MC masking of the ELBO terms these flags select (diffusion/masking.py)."""
        from megatron_bgpo.diffusion.masking import MaskingSpec

        return MaskingSpec(
            mode=self.masking_mode,
            eps=self.masking_eps,
            stratified=self.mc_t_sampling == "stratified",
            count=self.elbo_tokens,
            eos_id=eos_id,
            coupling=self.mc_coupling,
        )

    def objective_config(self):
        """The objective's hyper-parameters (rl/objectives.py `ObjectiveConfig`)."""
        from megatron_bgpo.rl.objectives import ObjectiveConfig

        return ObjectiveConfig(
            bound=self.bound,
            max_log_ratio=self.max_log_ratio,
            clip_eps=self.clip_eps,
            kl_beta=self.kl_beta,
        )


@dataclass(frozen=True)
class GenerationArgs:
    gen_length: int = 256
    diffusion_steps: int = 128
    block_length: int = 32
    temperature: float = 0.9
    remasking: str = "low_confidence"
    cfg_scale: float = 0.0
    max_prompt_length: int = 256
    eval_gen_length: int | None = None  # in-loop evaluation; None: --gen-length
    eval_diffusion_steps: int | None = None  # None: --diffusion-steps
    # fast decoding (megatron_bgpo.diffusion.sampler; all off = exact LLaDA decoding)
    threshold: float | None = None  # commit every block token whose confidence exceeds it
    fill_after_eos: bool = False
    early_exit: bool = False
    compact_rows: bool = False
    prefix_cache: bool = False
    dual_cache: bool = False

    def __post_init__(self) -> None:
        _at_least(self, 1, "gen_length", "diffusion_steps", "block_length", "max_prompt_length")
        _at_least(self, 0.0, "cfg_scale")
        for prefix, length, steps in (
            ("--", self.gen_length, self.diffusion_steps),
            ("--eval-", self.eval_length, self.eval_steps),
        ):
            _check(
                length % self.block_length == 0,
                f"{prefix}gen-length ({length}) must be a multiple of --block-length ({self.block_length})",
            )
            blocks = length // self.block_length
            _check(
                steps % blocks == 0,
                f"{prefix}diffusion-steps ({steps}) must be a multiple of the number of blocks "
                f"({blocks} = gen_length / block_length)",
            )
        _check(self.remasking in ("low_confidence", "random"), f"--remasking: {self.remasking!r}")
        _check(self.temperature >= 0, f"--temperature must be >= 0, got {self.temperature}")
        _check(
            self.threshold is None or 0.0 <= self.threshold < 1.0,
            f"--threshold must be in [0, 1), got {self.threshold}",
        )
        _check(
            not (self.prefix_cache and self.dual_cache),
            "--prefix-cache and --dual-cache are exclusive (the dual cache also caches the prefix)",
        )

    @property
    def eval_length(self) -> int:
        return self.gen_length if self.eval_gen_length is None else self.eval_gen_length

    @property
    def eval_steps(self) -> int:
        return self.diffusion_steps if self.eval_diffusion_steps is None else self.eval_diffusion_steps

    def sampler(self, tokenizer):
        """The rollout `SamplerConfig` (mask/EOS/stop ids from ``tokenizer``); the one place every entry
        point (training loop, tools/generate.py, tools/eval.py, benchmarks) builds it."""
        from megatron_bgpo.diffusion.sampler import SamplerConfig

        return SamplerConfig(
            gen_length=self.gen_length,
            steps=self.diffusion_steps,
            block_length=self.block_length,
            temperature=self.temperature,
            remasking=self.remasking,
            cfg_scale=self.cfg_scale,
            mask_id=tokenizer.mask_id,
            eos_id=tokenizer.eos_id,
            stop_ids=(tokenizer.eot_id,),
            **{name: getattr(self, name) for name in FAST_DECODING},
        )


FAST_DECODING = ("threshold", "fill_after_eos", "early_exit", "compact_rows", "prefix_cache", "dual_cache")
_FAST_HELP = {
    "fill_after_eos": "stop a row once its decided blocks hold a stop token (rest EOS; approximate)",
    "early_exit": "stop a row once a whole block of it is EOS (rest EOS; approximate)",
    "compact_rows": "run only the rows still decoding (exact)",
    "prefix_cache": "block-wise approximate prefix KV cache (Fast-dLLM)",
    "dual_cache": "approximate prefix + suffix KV cache (Fast-dLLM dual cache)",
}


def add_fast_decoding_flags(parser: argparse.ArgumentParser) -> None:
    """The fast-decoding fields of `GenerationArgs` as flags of a tool (tools/generate.py, tools/eval.py);
    read them back with :func:`fast_decoding_args`."""
    parser.add_argument(
        "--threshold", type=float, default=None, help="confidence-threshold parallel decoding"
    )
    for name, text in _FAST_HELP.items():
        parser.add_argument("--" + name.replace("_", "-"), action="store_true", help=text)


def fast_decoding_args(namespace: argparse.Namespace) -> dict[str, Any]:
    """``{field: value}`` of the flags added by :func:`add_fast_decoding_flags`."""
    return {name: getattr(namespace, name) for name in FAST_DECODING}


@dataclass(frozen=True)
class OptimArgs:
    lr: float = 5e-7
    min_lr: float = 0.0
    lr_decay_style: str = "constant"  # constant | cosine | linear
    lr_warmup_steps: int = 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    use_distributed_optimizer: bool = False
    max_skipped_steps: int = 3  # stop with an error after this many consecutive non-finite (skipped) steps

    def __post_init__(self) -> None:
        _check(math.isfinite(self.lr) and self.lr > 0, f"--lr must be > 0 and finite, got {self.lr}")
        _at_least(self, 0.0, "min_lr", "weight_decay", "clip_grad", "lr_warmup_steps")
        _at_least(self, 1, "max_skipped_steps")
        _check(self.min_lr <= self.lr, f"--min-lr ({self.min_lr}) must not exceed --lr ({self.lr})")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            _check(0 <= value < 1, f"--{name.replace('_', '-')} must be in [0, 1), got {value}")
        _check(self.adam_eps > 0, f"--adam-eps must be > 0, got {self.adam_eps}")
        step = self.lr / (1 - self.adam_beta1)  # Adam's bias-corrected step size at the first update
        _check(
            step < FLOAT32_MAX,
            f"--lr {self.lr:g} is too large: Adam's first step lr / (1 - --adam-beta1 {self.adam_beta1}) = "
            f"{step:.3g} overflows float32 (max {FLOAT32_MAX:.3g})",
        )
        _check(
            self.lr_decay_style in ("constant", "cosine", "linear"),
            f"--lr-decay-style: {self.lr_decay_style!r}",
        )


@dataclass(frozen=True)
class DataArgs:
    task: str = "sudoku"
    train_data: str | None = None  # local path or hub name; None: the task's built-in generator if any
    eval_data: str | None = None
    eval_samples: int = 64
    overfit_batch: bool = False  # train on the step-0 rollout batch at every step and evaluate on it
    tokenizer: str | None = None  # tokenizer folder/file; default: the one stored with --load

    def __post_init__(self) -> None:
        _at_least(self, 1, "eval_samples")


@dataclass(frozen=True)
class CheckpointArgs:
    load: str | None = None
    save: str | None = None
    save_interval: int = 0
    keep_last: int = 2
    finetune: bool = False  # load weights only (a converted or SFT checkpoint), reset optimizer/step
    load_fallback: bool = False  # a damaged latest iteration: resume from the newest complete one (loudly)

    def __post_init__(self) -> None:
        _at_least(self, 0, "save_interval", "keep_last")
        _check(not self.load_fallback or self.load, "--load-fallback needs --load")


@dataclass(frozen=True)
class LoggingArgs:
    log_interval: int = 1
    eval_interval: int = 0
    eval_at_start: bool = False  # also evaluate before the first step (logged as step 0)
    eval_temperature: float = 0.0  # 0: greedy; > 0: the policy's sampled reward (same noise at every eval)
    eval_samples_per_prompt: int = 1  # completions per held-out prompt (sampled evaluation)
    tensorboard_dir: str | None = None
    wandb_project: str | None = None

    def __post_init__(self) -> None:
        _at_least(self, 0, "log_interval", "eval_interval")
        _check(self.eval_temperature >= 0, f"--eval-temperature must be >= 0, got {self.eval_temperature}")
        _check(
            self.eval_samples_per_prompt >= 1,
            f"--eval-samples-per-prompt must be >= 1, got {self.eval_samples_per_prompt}",
        )


@dataclass(frozen=True)
class TrainConfig:
    model: ModelArgs = field(default_factory=ModelArgs)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    rl: RLArgs = field(default_factory=RLArgs)
    generation: GenerationArgs = field(default_factory=GenerationArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    data: DataArgs = field(default_factory=DataArgs)
    checkpoint: CheckpointArgs = field(default_factory=CheckpointArgs)
    logging: LoggingArgs = field(default_factory=LoggingArgs)
    train_steps: int = 100
    seed: int = 1234

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_GROUPS = {
    "model": ModelArgs,
    "parallel": ParallelConfig,
    "rl": RLArgs,
    "generation": GenerationArgs,
    "optim": OptimArgs,
    "data": DataArgs,
    "checkpoint": CheckpointArgs,
    "logging": LoggingArgs,
}
_TOP = ("train_steps", "seed")
# Megatron-LM spellings of our field names.
_ALIASES = {
    "tensor_model_parallel_size": ["--tp"],
    "pipeline_model_parallel_size": ["--pp"],
}


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {text!r}")


def _flag_type(f: dataclasses.Field):
    kind = str(f.type)
    if "bool" in kind:
        return _parse_bool
    if "float" in kind:
        return float
    if "int" in kind:
        return int
    return str


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="BGPO / RL training of diffusion LLMs on Megatron-Core")
    p.add_argument("--config", help="YAML recipe; its keys are flag names with underscores")
    for group_name, cls in _GROUPS.items():
        g = p.add_argument_group(group_name)
        for f in fields(cls):
            flag = "--" + f.name.replace("_", "-")
            g.add_argument(flag, *_ALIASES.get(f.name, []), dest=f.name, type=_flag_type(f), default=None)
    for name in _TOP:
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=None)
    return p


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build and validate a TrainConfig from flat ``{field_name: value}`` (unknown keys are errors)."""
    known = {f.name for cls in _GROUPS.values() for f in fields(cls)} | set(_TOP)
    unknown = sorted(set(values) - known)
    _check(not unknown, f"unknown configuration keys: {unknown}")
    groups = {
        name: cls(**{f.name: values[f.name] for f in fields(cls) if values.get(f.name) is not None})
        for name, cls in _GROUPS.items()
    }
    top = {k: values[k] for k in _TOP if values.get(k) is not None}
    cfg = TrainConfig(**groups, **top)
    _check(cfg.train_steps >= 1, f"--train-steps must be >= 1, got {cfg.train_steps}")
    return cfg


def check_world(cfg: TrainConfig, world_size: int) -> int:
    """The data-parallel size of ``cfg`` on ``world_size`` ranks, after checking that the layout tiles the
    world and that the batch sizes split evenly over the data-parallel ranks (errors name both values)."""
    dp = cfg.parallel.data_parallel_size(world_size)
    for name in ("rollout_batch_size", "mini_batch_size"):
        value = getattr(cfg.rl, name)
        _check(
            value % dp == 0,
            f"--{name.replace('_', '-')} ({value}) must be divisible by the data-parallel size ({dp} = "
            f"world size {world_size} / (tp x pp)) so every rank updates on the same number of prompts",
        )
    return dp


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    recipe = args.pop("config")
    if recipe:
        path = Path(recipe)
        _check(path.is_file(), f"--config: recipe not found: {recipe}")
        loaded = yaml.safe_load(path.read_text()) or {}
        _check(isinstance(loaded, dict), f"--config {recipe}: expected a mapping of flag names to values")
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in args.items() if v is not None})
    return config_from_dict(values)
