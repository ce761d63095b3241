"""LoRA adapters served next to the base model: a different adapter (or none) for each row of a batch.

``add_adapter(model, name, weights)`` wraps each targeted linear in a :class:`MultiLoRALinear` that keeps
the base layer as it is (float, int8/int4 or GGUF blocks) and holds every adapter's matrices stacked:
``lora_A`` (n_adapters, rank, in) and ``lora_B`` (n_adapters, out, rank), the scaling folded into B and
smaller ranks zero-padded. All wrappers of one model share an :class:`AdapterSelection`: which adapter
each row of the next forward uses (``use_adapters``), set by the caller (the engine) around a forward.
Rows of the base model add nothing; adapter rows add ``x A^T B^T`` with one batched product per layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from gptkit.errors import AdapterError, GenerationError

BASE = -1  # the row index of "no adapter"


class AdapterSelection:
    """The adapters of one model (by name, in slot order) and the rows each one serves in this forward."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.default: int | None = None  # the slot every row uses when no selection is set (applied lora=)
        self.rows: torch.Tensor | None = None  # (K,) batch rows that use an adapter in this forward
        self.slots: torch.Tensor | None = None  # (K,) their adapter slots
        self.lora_device = torch.device("cpu")  # where the stacked matrices live

    def index(self, name: str | None) -> int:
        """The slot of adapter ``name`` (BASE for None); GenerationError naming ``adapter`` if unknown."""
        if name is None:
            return BASE
        if name not in self.names:
            known = ", ".join(repr(n) for n in self.names) or "none"
            raise GenerationError(f"unknown adapter {name!r} (loaded: {known})", param="adapter")
        return self.names.index(name)

    @property
    def active(self) -> bool:
        """Whether any row of the coming forward uses an adapter."""
        return self.rows is not None or self.default is not None


class MultiLoRALinear(nn.Module):
    """A base linear layer plus a per-row choice of low-rank updates: y = base(x) + x A_s^T B_s^T."""

    def __init__(self, base_layer: nn.Module, selection: AdapterSelection) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.__dict__["selection"] = selection  # shared, not a submodule
        factory = {"device": _device_of(base_layer), "dtype": torch.float32}
        self.register_buffer("lora_A", torch.zeros(0, 1, self.in_features, **factory), persistent=False)
        self.register_buffer("lora_B", torch.zeros(0, self.out_features, 1, **factory), persistent=False)

    @property
    def adapter_active(self) -> bool:
        return self.selection.active

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)  # (B, T, out)
        selection = self.selection
        if selection.rows is not None:
            rows, slots = selection.rows, selection.slots  # (K,) each
            A, B = self.lora_A[slots], self.lora_B[slots]  # (K, r, in), (K, out, r)
            delta = torch.bmm(torch.bmm(x[rows].to(A.dtype), A.transpose(1, 2)), B.transpose(1, 2))
            return out.index_add(0, rows, delta.to(out.dtype))  # (B, T, out)
        if selection.default is not None:
            A, B = self.lora_A[selection.default], self.lora_B[selection.default]  # (r, in), (out, r)
            return out + ((x.to(A.dtype) @ A.t()) @ B.t()).to(out.dtype)
        return out

    def add_slot(self, A: torch.Tensor | None, B: torch.Tensor | None) -> None:
        """Stack one more adapter: A (r, in) and B (out, r) with the scaling folded in; None: no update."""
        rank = max(self.lora_A.shape[1], A.shape[0] if A is not None else 1)
        stacked_A = _pad_rank(self.lora_A, rank, dim=1)
        stacked_B = _pad_rank(self.lora_B, rank, dim=2)
        new_A = torch.zeros(1, rank, self.in_features, dtype=torch.float32, device=stacked_A.device)
        new_B = torch.zeros(1, self.out_features, rank, dtype=torch.float32, device=stacked_B.device)
        if A is not None:
            new_A[0, : A.shape[0]] = A.to(new_A)
            new_B[0, :, : B.shape[1]] = B.to(new_B)
        self.lora_A = torch.cat([stacked_A, new_A])
        self.lora_B = torch.cat([stacked_B, new_B])

    def extra_repr(self) -> str:
        return f"adapters={self.lora_A.shape[0]}, max_rank={self.lora_A.shape[1]}"


def _pad_rank(stack: torch.Tensor, rank: int, dim: int) -> torch.Tensor:
    """Zero-pad a stack of adapter matrices along its rank dimension to ``rank``."""
    missing = rank - stack.shape[dim]
    if missing == 0:
        return stack
    shape = list(stack.shape)
    shape[dim] = missing
    return torch.cat([stack, stack.new_zeros(shape)], dim=dim)


def _device_of(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def adapter_selection(model: nn.Module) -> AdapterSelection | None:
    """The model's adapters, or None when it has none."""
    return model.__dict__.get("adapter_selection")


def add_adapter(
    model: nn.Module,
    name: str,
    weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    default: bool = False,
) -> int:
    """Add adapter ``name``: module name -> (A (r, in), B (out, r), scaling folded into B); its slot.

    ``default``: every row uses it unless a forward selects otherwise (an adapter applied, not merged).
    AdapterError when a target is not a linear of the model's blocks or a shape does not fit it.
    """
    if not weights:
        raise AdapterError(f"adapter {name!r} holds no LoRA weights")
    selection = adapter_selection(model)
    if selection is None:
        selection = model.__dict__["adapter_selection"] = AdapterSelection()
    if name in selection.names:
        raise AdapterError(f"an adapter named {name!r} is already loaded")
    modules = {target: _check_target(model, target, A, B) for target, (A, B) in weights.items()}
    for target, module in modules.items():
        if not isinstance(module, MultiLoRALinear):
            module = _wrap(model, target, selection)
            modules[target] = module
    for module in (m for m in model.modules() if isinstance(m, MultiLoRALinear)):
        target = next((t for t, m in modules.items() if m is module), None)
        module.add_slot(*(weights[target] if target is not None else (None, None)))
    selection.names.append(name)
    selection.lora_device = next(iter(modules.values())).lora_A.device
    if default:
        selection.default = len(selection.names) - 1
    return len(selection.names) - 1


def _check_target(model: nn.Module, target: str, A: torch.Tensor, B: torch.Tensor) -> nn.Module:
    """The module an adapter targets, after checking that it is a block linear whose shape fits."""
    try:
        module = model.get_submodule(target)
    except AttributeError:
        module = None
    if module is None or not target.startswith("blocks.") or not hasattr(module, "in_features"):
        raise AdapterError(
            f"the adapter targets {target!r}, which is not a linear layer of the model's blocks"
        )
    rank = A.shape[0]
    if A.dim() != 2 or B.dim() != 2 or rank < 1 or B.shape[1] != rank:
        raise AdapterError(
            f"{target}: lora_A {tuple(A.shape)} and lora_B {tuple(B.shape)} do not share a rank"
        )
    if A.shape[1] != module.in_features or B.shape[0] != module.out_features:
        raise AdapterError(
            f"{target}: lora_A {tuple(A.shape)} / lora_B {tuple(B.shape)} do not fit the layer "
            f"({module.in_features} in, {module.out_features} out)"
        )
    return module


def _wrap(model: nn.Module, target: str, selection: AdapterSelection) -> MultiLoRALinear:
    """Swap the linear ``target`` for a MultiLoRALinear around it with empty slots for earlier adapters."""
    parent_name, _, child = target.rpartition(".")
    parent = model.get_submodule(parent_name)
    wrapper = MultiLoRALinear(getattr(parent, child), selection)
    for _ in selection.names:
        wrapper.add_slot(None, None)
    setattr(parent, child, wrapper)
    return wrapper


@contextmanager
def use_adapters(model: nn.Module, slots: Sequence[int]) -> Iterator[None]:
    """Within the block, row i of the model's forwards uses adapter slot ``slots[i]`` (BASE: none, or the
    model's default adapter when one was applied with ``default=True``)."""
    selection = adapter_selection(model)
    if selection is not None and selection.default is not None:
        slots = [selection.default if slot == BASE else slot for slot in slots]
    chosen = [(row, slot) for row, slot in enumerate(slots) if slot != BASE]
    if not chosen:  # no adapter in this batch (and no default): the base model's forward as it is
        yield
        return
    device = selection.lora_device
    saved = selection.rows, selection.slots, selection.default
    selection.default = None
    selection.rows = torch.tensor([r for r, _ in chosen], dtype=torch.long, device=device)
    selection.slots = torch.tensor([s for _, s in chosen], dtype=torch.long, device=device)
    try:
        yield
    finally:
        selection.rows, selection.slots, selection.default = saved


def adapters_active(model: nn.Module) -> bool:
    """Whether the model's next forward applies any adapter (then compiled and fused paths step aside)."""
    selection = adapter_selection(model)
    return selection is not None and selection.active
