"""Rollout speed: the plain LLaDA ``generate()`` port vs the project's sampler and its fast-decoding flags,
on the same model, prompts and seed, with a breakdown of where the time goes.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rollout_speed.py                    # tiny Sudoku SFT model
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rollout_speed.py --model llada8b-shape --layers 1
    .venv/bin/python -m torch.distributed.run --nproc-per-node 2 benchmarks/rollout_speed.py --tp 2

Models: ``sudoku`` (default) loads the tiny Sudoku SFT checkpoint of ``examples/bgpo_tiny_cpu.sh``
(``--load``, default the lead's run at /work/main/runs/tiny_seeds/seed1_jitter0/sft) and decodes
``--puzzles`` held-out puzzles (``--eval-data``); accuracy = the task reward (fraction of empty cells
filled correctly), mean +- standard error over the puzzles. ``llada8b-shape`` is an LLaDA-8B-shaped
model (d 4096, 32 heads, MLP 12288, vocab 126464) with ``--layers`` layers and random weights, on random
prompts: speed only.

Rows: ``llada port`` (benchmarks/llada_generate.py: full canvas and full-vocab logits every step), the
project's exact sampler (``exact``), then the switches added one at a time. Columns: NFE (model calls),
rows run (sum over calls; falls with ``compact_rows``), wall seconds (mean over ``--repeats``, with the
range), generated tokens/s (batch x gen_length / mean wall), speed-up over the port by mean and by best
(fastest repeat of each row) wall time, the process's CPU
seconds (``time.process_time``; steadier than wall time on a shared machine) and the speed-up they give,
token agreement with the port, accuracy, and the wall-time split: model (denoiser calls less their
collectives), communication (every torch.distributed collective: the model's TP all-reduces and the
sampler's vocab-parallel max / sum all-reduces, with the sampler's share in its own column; 0 on one
process; on gloo a collective's time includes waiting for the slower rank), sampling (the rest: Gumbel
noise, confidences, selection, bookkeeping). Under ``--tp 2`` the port is not run (it needs the full
vocabulary).
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llada_generate  # noqa: E402  (the port, beside this script)

from megatron_bgpo.diffusion.sampler import Prompts, SamplerConfig, generate  # noqa: E402
from megatron_bgpo.diffusion.vocab import VocabShard  # noqa: E402

RUN = "/work/main/runs/tiny_seeds/seed1_jitter0"
TIMES: dict[str, float] = {"model": 0.0, "comm": 0.0, "sampler_comm": 0.0}
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "broadcast", "reduce_scatter_tensor")


def _timed(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            TIMES[key] += time.perf_counter() - t0

    return call


def time_collectives() -> None:
    """Wrap torch.distributed's collectives (looked up by attribute at call time, as megatron's TP
    mappings and the sampler's VocabShard do) so their wall time adds to TIMES['comm']."""
    for name in COLLECTIVES:
        fn = getattr(dist, name)
        if not getattr(fn, "_timed", False):
            timed = _timed("comm", fn)
            timed._timed = True  # type: ignore[attr-defined]
            setattr(dist, name, timed)


class TimedDenoiser:
    """Forwards every denoiser hook of ``inner``, adding its wall time to TIMES['model']."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.accepts_logits_range = getattr(inner, "accepts_logits_range", False)
        self._call = _timed("model", inner)
        for hook in ("prefill", "extend", "cache_rows"):
            if hasattr(inner, hook):
                setattr(self, hook, _timed("model", getattr(inner, hook)))

    def __call__(self, *args: Any, **kw: Any) -> Any:
        return self._call(*args, **kw)


@dataclass(frozen=True)
class TimedVocab(VocabShard):
    """VocabShard whose all-reduces add their wall time to TIMES['sampler_comm'] (and, through the
    wrapped collectives, to TIMES['comm'])."""

    def all_reduce(self, x: torch.Tensor, op: Any) -> torch.Tensor:
        return _timed("sampler_comm", super().all_reduce)(x, op)


@dataclass
class Setup:
    denoiser: Any  # MegatronDenoiser
    prompts: Prompts
    mask_id: int
    eos_id: int
    score: Callable[[torch.Tensor], list[float]] | None  # generated ids [B, L] -> rewards
    rank0: bool


def _single_process_env() -> None:
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(sock.getsockname()[1])


def sudoku_setup(a: argparse.Namespace) -> Setup:
    from megatron_bgpo.diffusion.sampler import SampleOutput, trimmed_lengths
    from megatron_bgpo.models.llada.inference import decode_outputs
    from megatron_bgpo.parallel import ParallelConfig
    from megatron_bgpo.tasks import get_task
    from megatron_bgpo.training.policy import load_for_inference
    from megatron_bgpo.training.rollout import encode_prompts

    _single_process_env()
    tok, policy = load_for_inference(a.load, None, ParallelConfig(a.tp, 1), "fp32", 0)
    task = get_task("sudoku_brief")
    examples = list(task.load(a.eval_data).examples)[: a.puzzles]
    prompts = encode_prompts(tok, [task.prompt_text(ex) for ex in examples], 64)
    stops = (tok.eos_id, tok.eot_id)

    def score(gen: torch.Tensor) -> list[float]:
        out = SampleOutput(gen, gen, trimmed_lengths(gen, stops), 0)
        return [task.reward(t, ex) for t, ex in zip(decode_outputs(tok, out), examples, strict=True)]

    return Setup(policy.denoiser, prompts, tok.mask_id, tok.eos_id, score, dist.get_rank() == 0)


def llada8b_setup(a: argparse.Namespace) -> Setup:
    from megatron_bgpo.models.llada import get_preset
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed
    from megatron_bgpo.training.policy import Policy

    _single_process_env()
    parallel = ParallelConfig(a.tp, 1)
    groups = parallel_groups(parallel, init_distributed())
    set_seed(0)
    cfg = get_preset("llada-8b").replace(n_layers=a.layers, mask_token_id=126336, eos_token_id=126081)
    policy = Policy.build(cfg, parallel, groups, torch.float32)
    gen = torch.Generator().manual_seed(0)
    seqs = [
        torch.randint(
            0,
            126000,
            (int(torch.randint(a.prompt_length // 2, a.prompt_length + 1, (1,), generator=gen)),),
            generator=gen,
        ).tolist()
        for _ in range(a.batch)
    ]
    prompts = Prompts.from_lists(seqs, pad_id=126081)
    return Setup(policy.denoiser, prompts, 126336, 126081, None, dist.get_rank() == 0)


MODELS = {"sudoku": sudoku_setup, "llada8b-shape": llada8b_setup}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="sudoku")
    ap.add_argument("--load", default=f"{RUN}/sft", help="sudoku: the SFT checkpoint folder")
    ap.add_argument("--eval-data", default=f"{RUN}/base/eval.csv", help="sudoku: held-out puzzles (csv)")
    ap.add_argument("--puzzles", type=int, default=128, help="sudoku: held-out puzzles decoded (one batch)")
    ap.add_argument("--layers", type=int, default=1, help="llada8b-shape: transformer layers")
    ap.add_argument("--batch", type=int, default=4, help="llada8b-shape: prompts")
    ap.add_argument("--prompt-length", type=int, default=32, help="llada8b-shape: longest prompt")
    ap.add_argument("--gen-length", type=int, default=32)
    ap.add_argument("--block-length", type=int, default=8)
    ap.add_argument("--diffusion-steps", type=int, default=None, help="default: gen_length (1 token/step)")
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per row (mean and range reported)")
    ap.add_argument("--tp", type=int, default=1, help="tensor-parallel size (run under torchrun)")
    ap.add_argument("--rows", default=None, help="comma-separated row names to run (default: all)")
    a = ap.parse_args()
    steps = a.diffusion_steps or a.gen_length
    s = MODELS[a.model](a)
    time_collectives()
    den = TimedDenoiser(s.denoiser)
    vs = s.denoiser.vocab_shard()
    vocab = TimedVocab(vs.tp_group, vs.vocab_start, vs.real_vocab_size)
    pipeline = s.denoiser.pipeline_comm()
    pr = s.prompts
    bsz, plen = pr.input_ids.shape
    base = SamplerConfig(
        gen_length=a.gen_length,
        steps=steps,
        block_length=a.block_length,
        temperature=a.temperature,
        mask_id=s.mask_id,
        eos_id=s.eos_id,
    )
    th = a.threshold
    fast = dict(threshold=th, early_exit=True, compact_rows=True)
    settings: list[tuple[str, SamplerConfig | None]] = [
        ("llada port", None),
        ("exact", base),
        (f"threshold {th}", base.with_(threshold=th)),
        ("+ early_exit", base.with_(threshold=th, early_exit=True)),
        ("+ compact_rows", base.with_(**fast)),
        ("+ prefix_cache", base.with_(**fast, prefix_cache=True)),
        ("+ dual_cache (no prefix_cache)", base.with_(**fast, dual_cache=True)),
        ("threshold 0.7 + all (dual_cache)", base.with_(**(fast | dict(threshold=0.7)), dual_cache=True)),
        ("exact + prefix_cache", base.with_(prefix_cache=True)),
        ("exact + dual_cache", base.with_(dual_cache=True)),
    ]
    if a.tp > 1:
        settings = settings[1:]
    if a.rows:
        keep = {r.strip() for r in a.rows.split(",")}
        settings = [x for x in settings if x[0] in keep]

    def port(x: torch.Tensor, am: torch.Tensor) -> torch.Tensor:
        return den(x, am, Prompts.positions_from_mask(am))[..., : s.denoiser.cfg.vocab_size]

    n_tok = bsz * a.gen_length
    if s.rank0:
        load = os.getloadavg()[0]
        print(
            f"\nmodel {a.model}, batch {bsz}, prompt width {plen}, gen_length {a.gen_length}, block "
            f"{a.block_length}, steps {steps}, temperature {a.temperature}, seed {a.seed}, TP {a.tp}, torch "
            f"threads {torch.get_num_threads()}, load {load:.1f}, {time.strftime('%Y-%m-%d %H:%M UTC')}\n"
        )
        print(
            "| decoding | NFE | rows run | wall s (range) | tokens/s | vs port | vs port (best) | CPU s "
            "| vs port (CPU) "
            "| agree w/ port | accuracy +- SE | model % | comm % | of which sampler % | sampling % |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    runs: dict[str, list[tuple[float, dict[str, float], torch.Tensor, int, int]]] = {
        n: [] for n, _ in settings
    }
    for _ in range(a.repeats):  # round-robin over the rows, so a change of machine load hits them alike
        for name, cfg in settings:
            TIMES.update(model=0.0, comm=0.0, sampler_comm=0.0)
            t0, c0 = time.perf_counter(), time.process_time()
            if cfg is None:
                torch.manual_seed(a.seed)
                canvas = llada_generate.generate(
                    port,
                    pr.input_ids,
                    pr.attention_mask,
                    steps=steps,
                    gen_length=a.gen_length,
                    block_length=a.block_length,
                    temperature=a.temperature,
                    mask_id=s.mask_id,
                )
                tokens, nfe, rows_run = canvas[:, plen:], steps, steps * bsz
            else:
                out = generate(den, pr, cfg, seed=a.seed, vocab=vocab, pipeline=pipeline)
                tokens, nfe, rows_run = out.tokens, out.nfe, out.row_calls
            TIMES["cpu"] = time.process_time() - c0
            runs[name].append((time.perf_counter() - t0, dict(TIMES), tokens, nfe, rows_run))
    port_tokens = runs[settings[0][0]][0][2]
    port_tps, port_cpu, port_best = None, None, 1.0
    for name, cfg in settings:
        walls = [r[0] for r in runs[name]]
        _, _, tokens, nfe, rows_run = runs[name][0]
        wall = statistics.mean(walls)
        model = statistics.mean(r[1]["model"] for r in runs[name])
        comm = statistics.mean(r[1]["comm"] for r in runs[name])
        sampler_comm = statistics.mean(r[1]["sampler_comm"] for r in runs[name])
        model -= comm - sampler_comm  # the model's own collectives ran inside the denoiser calls
        cpu = statistics.mean(r[1]["cpu"] for r in runs[name])
        if cfg is None:
            port_tps, port_cpu = n_tok / wall, cpu
        agree = (tokens == port_tokens).float().mean().item()
        acc = "-"
        if s.score is not None:
            r = s.score(tokens)
            se = statistics.stdev(r) / math.sqrt(len(r))
            acc = f"{statistics.mean(r):.3f} +- {se:.3f}"
        if cfg is None:
            port_best = min(walls)
        speed = f"{n_tok / wall / port_tps:.1f}x" if port_tps else "-"
        best = f"{port_best / min(walls):.1f}x" if port_tps else "-"
        cpu_speed = f"{port_cpu / cpu:.1f}x" if port_cpu else "-"
        if s.rank0:
            print(
                f"| {name} | {nfe} | {rows_run} | {wall:.2f} ({min(walls):.2f}-{max(walls):.2f}) | "
                f"{n_tok / wall:,.0f} | {speed} | {best} | {cpu:.2f} | {cpu_speed} | {agree:.3f} | {acc} | "
                f"{100 * model / wall:.0f} | "
                f"{100 * comm / wall:.1f} | {100 * sampler_comm / wall:.1f} | "
                f"{100 * (wall - model - comm) / wall:.0f} |",
                flush=True,
            )
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
