"""Forward + backward throughput (and MFU) of LLaDA decoder layers at LLaDA-8B width.

    python benchmarks/layer_mfu.py --layers 4 --dtype bf16 --peak-tflops 989   # GPU (H100/H200 dense bf16)
    python benchmarks/layer_mfu.py --layers 1 --d-model 256 --seq 128 --batch 2  # CPU smoke run

Runs the HybridModel's decoder stack only (no embedding or output layer, whose cost depends on how many
positions carry a loss: benchmarks/logprob_memory.py) on [seq, batch, d_model] hidden states with
bidirectional attention, a sum loss, ``--iters`` timed iterations after ``--warmup``. Model FLOPs per
token and layer (fwd + bwd = 3x fwd): 6 x (attention + MLP weights) + 12 x seq x d_model (QK^T and AV).
MFU = achieved model FLOP/s / ``--peak-tflops`` (no default: give your card's dense peak).
"""

from __future__ import annotations

import argparse
import time

import torch


def layer_flops_per_token(d_model: int, n_heads: int, n_kv_heads: int, mlp: int, seq: int) -> float:
    """fwd + bwd model FLOPs of one LLaDA block per token (GQA projections, SwiGLU, full attention)."""
    head_dim = d_model // n_heads
    attn_weights = d_model * (n_heads + 2 * n_kv_heads) * head_dim + n_heads * head_dim * d_model
    mlp_weights = 3 * d_model * mlp
    return 6.0 * (attn_weights + mlp_weights) + 12.0 * seq * d_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--d-model", type=int, default=4096)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--mlp", type=int, default=None, help="default: LLaDA-8B's 12288 at d_model 4096, else 3x")
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--peak-tflops", type=float, default=None, help="the card's dense peak for --dtype")
    args = p.parse_args()

    from megatron_bgpo.models.llada import LLaDAConfig, build_model_chunks
    from megatron_bgpo.models.llada.prefix_cache import unwrap_model
    from megatron_bgpo.parallel import ParallelConfig, init_distributed, parallel_groups, set_seed

    parallel = ParallelConfig(1, 1)
    groups = parallel_groups(parallel, init_distributed())
    set_seed(0)
    mlp = args.mlp or (12288 if args.d_model == 4096 else 3 * args.d_model)
    cfg = LLaDAConfig(
        d_model=args.d_model, n_layers=args.layers, n_heads=args.heads, n_kv_heads=args.heads,
        mlp_hidden_size=mlp, vocab_size=512, embedding_size=512, mask_token_id=511, eos_token_id=510,
        pad_token_id=510,
    )  # fmt: skip
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    (model,) = build_model_chunks(cfg, parallel, groups.pgs, params_dtype=dtype)
    decoder = unwrap_model(model).decoder
    device = next(decoder.parameters()).device
    hidden = torch.randn(args.seq, args.batch, args.d_model, dtype=dtype, device=device, requires_grad=True)
    no_mask = torch.zeros(args.batch, 1, 1, args.seq, dtype=torch.bool, device=device)
    rotary = unwrap_model(model).rotary_pos_emb(args.seq)

    def step() -> None:
        out = decoder(hidden_states=hidden, attention_mask=no_mask, rotary_pos_emb=rotary)
        out.float().sum().backward()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / args.iters
    tokens = args.seq * args.batch
    flops = layer_flops_per_token(args.d_model, args.heads, args.heads, mlp, args.seq) * tokens * args.layers
    tflops = flops / seconds / 1e12
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    mfu = f"{100 * tflops / args.peak_tflops:.1f}%" if args.peak_tflops else "n/a (no --peak-tflops)"
    print(
        f"# {args.layers} layers, d_model {args.d_model}, mlp {mlp}, {args.heads} heads, {args.dtype}, {name}"
    )
    print("| tokens/step | s/step (fwd+bwd) | tokens/s | model TFLOP/s | MFU |")
    print("|---|---|---|---|---|")
    print(f"| {tokens} | {seconds:.4f} | {tokens / seconds:.0f} | {tflops:.1f} | {mfu} |")


if __name__ == "__main__":
    main()
