"""The ONLY place where megatron-core is adapted to run on CPU (gloo backend, no CUDA).

`apply()` is a no-op when CUDA is available, so GPU behaviour is never changed. Without CUDA it
redirects the handful of CUDA-only calls that megatron-core 0.19 makes on our code paths to their
CPU equivalents. Each patch names the megatron-core call it serves. Everything else (model code,
schedules, optimizer, checkpointing) is the unmodified library.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import types

import torch

_APPLIED = False


def cpu_mode() -> bool:
    """True when this process runs without CUDA (tests, the tiny CPU run)."""
    return not torch.cuda.is_available()


class _NullEvent:
    """Stands in for ``torch.cuda.Event`` (the MoE dispatcher's device-to-host event)."""

    def synchronize(self) -> None:
        pass

    def wait(self, stream: object = None) -> None:
        pass


class _NullStream:
    """Stands in for ``torch.cuda.Stream``: CPU work is synchronous, so waits are no-ops."""

    def wait_stream(self, other: object) -> None:
        pass

    def wait_event(self, event: object) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def record_event(self, event: object = None) -> _NullEvent:
        return _NullEvent()


# megatron-core modules that allocate with a literal ``device="cuda"`` on our code paths
# (schedules' token counters, DDP grad buffers, optimizer/grad-norm scalars, checkpoint exchange).
_CUDA_ALLOCATING_MODULES = (
    "megatron.core.pipeline_parallel.schedules",
    "megatron.core.pipeline_parallel.utils",
    "megatron.core.distributed.param_and_grad_buffer",
    "megatron.core.distributed.finalize_model_grads",
    "megatron.core.optimizer.optimizer",
    "megatron.core.optimizer.clip_grads",
    "megatron.core.optimizer.distrib_optimizer",
    "megatron.core.optimizer.grad_scaler",
    "megatron.core.dist_checkpointing.exchange_utils",
    "megatron.core.dist_checkpointing.strategies.state_dict_saver",
    "megatron.core.models.common.language_module.language_module",
    "megatron.core.tensor_parallel.data",
    "megatron.core.utils",
)
_FACTORIES = ("zeros", "ones", "empty", "full", "tensor", "as_tensor", "arange", "randn", "rand", "randint")


def default_device() -> torch.device:
    """The device this process computes on: its current CUDA device, else the CPU."""
    return (
        torch.device("cuda", torch.cuda.current_device())
        if torch.cuda.is_available()
        else torch.device("cpu")
    )


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """Print ``warning: message`` once per process, on global rank 0 only."""
    import torch.distributed as dist

    if message in _WARNED:
        return
    _WARNED.add(message)
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(f"warning: {message}", flush=True)


def inference_dtype(dtype: torch.dtype) -> torch.dtype:
    """Parameter dtype for generation: bf16 becomes fp32 on CPU (slow bf16 matmuls), with one warning."""
    if dtype == torch.bfloat16 and cpu_mode():
        warn_once(
            "--params-dtype bf16 generates in fp32 on CPU (no CUDA); pass --params-dtype fp32 to silence"
        )
        return torch.float32
    return dtype


def compute_device() -> torch.device:
    """Where the model and its inputs live: this process's CUDA device, or the CPU without CUDA."""
    return torch.device("cpu") if cpu_mode() else torch.device("cuda", torch.cuda.current_device())


def to_device(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` on this process's CUDA device; unchanged on CPU (built there by megatron-core)."""
    return module if cpu_mode() else module.cuda(torch.cuda.current_device())


def cuda_rng_state() -> torch.Tensor | None:
    """The CUDA generator state for a checkpoint (None on CPU)."""
    return None if cpu_mode() else torch.cuda.get_rng_state()


def set_cuda_rng_state(state: torch.Tensor | None) -> None:
    """Restore a checkpoint's CUDA generator state (ignored on CPU or when the checkpoint has none)."""
    if state is not None and not cpu_mode():
        torch.cuda.set_rng_state(state)


def peak_device_memory_mib() -> float | None:
    """Peak CUDA memory allocated by this process in MiB; None on CPU (callers use peak RSS)."""
    return None if cpu_mode() else torch.cuda.max_memory_allocated() / 2**20


def _is_cuda(device: object) -> bool:
    return (isinstance(device, str) and device.startswith("cuda")) or (
        isinstance(device, torch.device) and device.type == "cuda"
    )


def _cpu_factory(factory):
    @functools.wraps(factory)
    def wrapper(*args, **kwargs):
        if _is_cuda(kwargs.get("device")):
            kwargs["device"] = "cpu"
        return factory(*args, **kwargs)

    return wrapper


class _CpuAllocTorch(types.ModuleType):
    """``torch`` as seen by one megatron module: tensor factories map ``device="cuda"`` to the CPU."""

    def __init__(self) -> None:
        super().__init__("torch")
        for name in _FACTORIES:
            setattr(self, name, _cpu_factory(getattr(torch, name)))

    def __getattr__(self, name: str):
        return getattr(torch, name)


def _clip_grad_by_total_norm_cpu(parameters, max_norm, total_norm, use_decoupled_grad=False):
    """CPU twin of `clip_grads.clip_grad_by_total_norm_fp32` (which asserts torch.cuda.FloatTensor grads
    and scales through a CUDA multi-tensor kernel): the same in-place scaling with plain tensor ops."""
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    attr = "decoupled_grad" if use_decoupled_grad else "grad"
    grads = [getattr(p, attr) for p in parameters if getattr(p, attr, None) is not None]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if isinstance(clip_coeff, torch.Tensor):
        clip_coeff = clip_coeff.clamp_max(1.0)
    elif clip_coeff >= 1.0:
        return
    for g in grads:
        g.detach().mul_(clip_coeff)


_CUDA_TYPE_NAMES = {
    torch.float32: "torch.cuda.FloatTensor",
    torch.float16: "torch.cuda.HalfTensor",
    torch.bfloat16: "torch.cuda.BFloat16Tensor",
}


@contextlib.contextmanager
def _cuda_tensor_type_names():
    """While active, ``tensor.type()`` (no arguments) of a CPU fp32/fp16/bf16 tensor returns its
    ``torch.cuda.*Tensor`` name; ``tensor.type(dtype)`` (a conversion) is untouched.

    megatron-core sorts optimizer parameters into fp32 / 16-bit groups by comparing ``param.type()``
    with the CUDA type names, and raises TypeError for anything else (a CPU tensor):
    `DistributedOptimizer.__init__` / `_build_model_and_main_param_groups` and
    `Float16OptimizerWithFloat16Params.__init__`. Only those constructors run under this context.
    """
    original = torch.Tensor.type

    def cuda_named_type(self, *args, **kwargs):
        if not args and not kwargs and self.device.type == "cpu" and self.dtype in _CUDA_TYPE_NAMES:
            return _CUDA_TYPE_NAMES[self.dtype]
        return original(self, *args, **kwargs)

    torch.Tensor.type = cuda_named_type
    try:
        yield
    finally:
        torch.Tensor.type = original


def _with_cuda_type_names(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _cuda_tensor_type_names():
            return fn(*args, **kwargs)

    return wrapper


def _torch_adam_state_before_load(sharded_state_dict):
    """`DistributedOptimizer.sharded_state_dict` with torch's Adam (no TE/apex FusedAdam, as on CPU):
    before a load into a fresh optimizer it calls its own ``state_dict()``, which asserts a single Adam
    ``step`` in the (still empty) torch state. Allocate the state torch's Adam would create at its first
    step (step 0, zero moments) first; the load then overwrites all of it."""

    @functools.wraps(sharded_state_dict)
    def wrapper(self, model_sharded_state_dict=None, is_loading=False, *args, **kwargs):
        inner = self.optimizer
        if is_loading and isinstance(inner, torch.optim.Adam | torch.optim.AdamW) and not inner.state:
            for group in inner.param_groups:
                for p in group["params"]:
                    inner.state[p] = {
                        "step": torch.tensor(0.0),
                        "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                        "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                    }
        return sharded_state_dict(self, model_sharded_state_dict or {}, is_loading, *args, **kwargs)

    return wrapper


def _keep_torch_adam_step(set_states):
    """`DistributedOptimizer._set_main_param_and_optimizer_states` copies every tensor of a parameter's
    torch optimizer state from the loaded ``tensors``; torch's Adam also holds a tensor ``step``, which
    the 'fully_reshardable' loader leaves out (it restores the one common step from the param groups),
    so the copy raises KeyError('step'). Mark the step as not loaded here (None is skipped)."""

    @functools.wraps(set_states)
    def wrapper(self, model_param, tensors):
        if "step" not in tensors:
            tensors = {**tensors, "step": None}
        return set_states(self, model_param, tensors)

    return wrapper


def _unshared_torch_adam_steps(load_state_dict):
    """`DistributedOptimizer.load_state_dict` with torch's Adam puts ONE ``step`` tensor object into every
    parameter's state; torch's Adam increments each parameter's step in place, so the shared counter
    advanced once per parameter per update and the bias correction was wrong after a resume. Give every
    parameter its own copy (same value) after the load."""

    @functools.wraps(load_state_dict)
    def wrapper(self, state_dict):
        out = load_state_dict(self, state_dict)
        inner = self.optimizer
        if isinstance(inner, torch.optim.Adam | torch.optim.AdamW):
            for state in inner.state.values():
                if isinstance(state.get("step"), torch.Tensor):
                    state["step"] = state["step"].clone()
        return out

    return wrapper


def _cpu_counts(tensor, as_numpy: bool = False, record_stream: bool = False):
    """CPU twin of moe_utils.`maybe_move_tensor_to_cpu`: the MoE alltoall dispatcher's split sizes come
    back as numpy arrays, as they do from a CUDA tensor (the original only converts CUDA tensors, and
    ``all_to_all_single`` refuses tensor split sizes)."""
    if torch.is_tensor(tensor) and as_numpy:
        return tensor.numpy()
    return tensor


def _uneven_gather_on_gloo(gather):
    """megatron's `_gather_along_first_dim` with ``output_split_sizes`` calls ``all_gather`` with tensors
    of different sizes, which gloo refuses (the MoE dispatcher's expert-TP gather at TP x EP). Gather
    padded to the largest split and cut instead; equal splits go to the original."""

    @functools.wraps(gather)
    def wrapper(input_, group, output_split_sizes=None, use_global_buffer=False):
        sizes = None if output_split_sizes is None else [int(n) for n in output_split_sizes]
        if sizes is None or group.size() == 1 or len(set(sizes)) == 1:
            return gather(input_, group, output_split_sizes, use_global_buffer)
        longest = max(sizes)
        padded = input_.new_zeros((longest, *input_.shape[1:]))
        padded[: input_.shape[0]] = input_
        pieces = [torch.empty_like(padded) for _ in sizes]
        torch.distributed.all_gather(pieces, padded.contiguous(), group=group)
        return torch.cat([piece[:n] for piece, n in zip(pieces, sizes, strict=True)])

    return wrapper


def _uneven_reduce_scatter_on_gloo(reduce_scatter):
    """megatron's `_reduce_scatter_along_first_dim` with ``input_split_sizes`` (the backward of the
    uneven gather above): every rank splits the same-sized input the same way, so an all-reduce of the
    whole input and this rank's split is the reduce-scatter."""

    @functools.wraps(reduce_scatter)
    def wrapper(input_, group, input_split_sizes=None, use_global_buffer=False):
        sizes = None if input_split_sizes is None else [int(n) for n in input_split_sizes]
        if sizes is None or group.size() == 1 or len(set(sizes)) == 1:
            return reduce_scatter(input_, group, input_split_sizes, use_global_buffer)
        total = input_.contiguous().clone()
        torch.distributed.all_reduce(total, group=group)
        return torch.split(total, sizes, dim=0)[group.rank()].clone()

    return wrapper


def apply() -> bool:
    """Install the CPU patches once; returns True when they are active."""
    global _APPLIED
    if not cpu_mode():
        return False
    if _APPLIED:
        return True
    cuda = torch.cuda

    # Allocations `device=torch.cuda.current_device()` (RotaryEmbedding.get_emb, the optimizer's
    # grad-scale tensor, dist-checkpointing buffers, schedules' tensor shapes) go to the CPU.
    cuda.current_device = lambda: torch.device("cpu")

    # `tensor.cuda()` / `module.cuda()` (schedules' loss scaling, dist-checkpointing strategies,
    # clip_grads) become identity.
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self

    # CUDA RNG tracker (`tensor_parallel.model_parallel_cuda_manual_seed`, `get_cuda_rng_tracker().fork()`
    # around dropout and weight init): the "device generator" on CPU is the CPU generator.
    # (torch.manual_seed itself calls cuda.manual_seed_all, so seed the CPU generator directly.)
    cuda.manual_seed = lambda seed: torch.default_generator.manual_seed(int(seed))
    cuda.manual_seed_all = lambda seed: torch.default_generator.manual_seed(int(seed))
    cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()
    cuda.set_rng_state = lambda new_state, device="cuda": torch.set_rng_state(new_state)
    from megatron.core.tensor_parallel import random as mcore_random

    mcore_random._get_cuda_rng_state = lambda *args, **kwargs: torch.get_rng_state()
    mcore_random._set_cuda_rng_state = lambda new_state, *args, **kwargs: torch.set_rng_state(new_state)

    # Streams and synchronisation (DDP grad-sync `torch.cuda.current_stream()`, schedules'
    # `torch.cuda.synchronize()`, async checkpoint save): nothing is asynchronous on CPU.
    cuda.synchronize = lambda device=None: None
    cuda.current_stream = lambda device=None: _NullStream()
    cuda.default_stream = lambda device=None: _NullStream()
    cuda.stream = lambda stream=None: contextlib.nullcontext()
    # The MoE alltoall token dispatcher makes a side stream for its device-to-host count copies.
    cuda.Stream = lambda *args, **kwargs: _NullStream()
    cuda.empty_cache = lambda: None

    # Memory statistics used in logging: report zero instead of raising.
    for name in ("max_memory_allocated", "memory_allocated", "max_memory_reserved", "memory_reserved"):
        setattr(cuda, name, functools.partial(lambda *args, **kwargs: 0))
    cuda.reset_peak_memory_stats = lambda device=None: None

    # Gradient clipping (`MegatronOptimizer.clip_grad_norm` -> clip_grad_by_total_norm_fp32).
    from megatron.core.optimizer import optimizer as mcore_optimizer

    mcore_optimizer.clip_grad_by_total_norm_fp32 = _clip_grad_by_total_norm_cpu

    # Parameter sorting by CUDA type name in the constructors of the distributed optimizer and of the
    # bf16/fp16 optimizer with fp32 main weights (`_cuda_tensor_type_names`). Their collectives
    # (reduce_scatter_tensor, all_gather_into_tensor under _coalescing_manager) run on gloo as they are.
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    DistributedOptimizer.__init__ = _with_cuda_type_names(DistributedOptimizer.__init__)
    DistributedOptimizer.sharded_state_dict = _torch_adam_state_before_load(
        DistributedOptimizer.sharded_state_dict
    )
    DistributedOptimizer._set_main_param_and_optimizer_states = _keep_torch_adam_step(
        DistributedOptimizer._set_main_param_and_optimizer_states
    )
    DistributedOptimizer.load_state_dict = _unshared_torch_adam_steps(DistributedOptimizer.load_state_dict)
    mcore_optimizer.Float16OptimizerWithFloat16Params.__init__ = _with_cuda_type_names(
        mcore_optimizer.Float16OptimizerWithFloat16Params.__init__
    )

    # MoE alltoall token dispatcher: its token counts are already on the CPU.
    from megatron.core.transformer.moe import token_dispatcher

    token_dispatcher.maybe_move_tensor_to_cpu = _cpu_counts
    # ... and its gather / reduce-scatter of uneven token counts over the expert-TP group (TP x EP).
    from megatron.core.tensor_parallel import mappings

    mappings._gather_along_first_dim = _uneven_gather_on_gloo(mappings._gather_along_first_dim)
    mappings._reduce_scatter_along_first_dim = _uneven_reduce_scatter_on_gloo(
        mappings._reduce_scatter_along_first_dim
    )

    # Literal `device="cuda"` allocations: swap the module-level `torch` name of those modules only.
    proxy = _CpuAllocTorch()
    for module_name in _CUDA_ALLOCATING_MODULES:
        module = importlib.import_module(module_name)
        if getattr(module, "torch", None) is torch:
            module.torch = proxy

    _APPLIED = True
    return True
