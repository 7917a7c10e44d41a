"""NanoTransformer, the seed's character-level GPT, in two forms.

- `NanoTransformer`: one model, nanoGPT-style `nn.Module` (pre-LN blocks, causal scaled-dot-product
  attention, GELU MLP, untied output head). The plain baseline and the calibration use it.
- `PackedNanoTransformer`: K independent models of one shape trained as one batched model. Every
  parameter has a leading K axis and lives as a view of one flat (K, P) buffer, so per-model gradient
  norms, clipping and the optimizer step are a few kernels over that buffer, whatever K is. On CUDA
  its attention, MLP and residual-add + LayerNorm run as Triton kernels (`pyphase.attention`,
  `pyphase.mlp`, `pyphase.layernorm`, `pyphase.mlp_block`, `pyphase.head`: same computation, less
  memory traffic).

With V = 200 the default shape (d_model 128, 4 layers, 4 heads, MLP 4x, context 256) has 877,312
parameters, the figure the trainer issue quotes; with Tiny Shakespeare's 65 characters it has 842,752.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pyphase import attention, linear
from pyphase.attention import causal_attention
from pyphase.head import head_ce, mean_loss
from pyphase.layernorm import embed_ln_stream
from pyphase.linear import linear_bias
from pyphase.mlp_block import mlp_block_stream

if TYPE_CHECKING:
    from pyphase.config import ModelShape


@dataclass(frozen=True)
class Shape:
    """Model shape; `vocab_size` comes from the corpus."""

    vocab_size: int
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    mlp_ratio: int = 4
    block_size: int = 256

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layer", "n_head", "mlp_ratio", "block_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"model {name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_head:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_head {self.n_head}")

    @classmethod
    def of(cls, model: "ModelShape", vocab_size: int) -> "Shape":
        """The shape of an experiment's model (`config.ModelShape`) on a corpus of `vocab_size` characters."""
        return cls(vocab_size, model.d_model, model.n_layer, model.n_head, model.mlp_ratio, model.block_size)

    def param_shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        """Names and shapes of one model's parameters, in the packed model's order."""
        d, h, v, t = self.d_model, self.mlp_ratio * self.d_model, self.vocab_size, self.block_size
        out: list[tuple[str, tuple[int, ...]]] = [("wte", (v, d)), ("wpe", (t, d))]
        for i in range(self.n_layer):
            out += [
                (f"h{i}.ln1_w", (d,)), (f"h{i}.ln1_b", (d,)),
                (f"h{i}.attn_w", (d, 3 * d)), (f"h{i}.attn_b", (3 * d,)),
                (f"h{i}.proj_w", (d, d)), (f"h{i}.proj_b", (d,)),
                (f"h{i}.ln2_w", (d,)), (f"h{i}.ln2_b", (d,)),
                (f"h{i}.fc_w", (d, h)), (f"h{i}.fc_b", (h,)),
                (f"h{i}.fc2_w", (h, d)), (f"h{i}.fc2_b", (d,)),
            ]
        out += [("lnf_w", (d,)), ("lnf_b", (d,)), ("head_w", (d, v))]
        return out

    @property
    def n_params(self) -> int:
        return sum(math.prod(s) for _, s in self.param_shapes())

    def flops_per_token(self) -> float:
        """Training FLOPs per token: 6N + 12·L·d·T (the trainer issue's MFU convention)."""
        return 6.0 * self.n_params + 12.0 * self.n_layer * self.d_model * self.block_size


def init_params(shape: Shape, seed: int) -> dict[str, Tensor]:
    """One model's initial parameters (fp32, CPU), from `seed` alone so every device and every
    packing of a config starts from the same weights. GPT-2 scheme: N(0, 0.02) weights,
    residual projections scaled by 1/sqrt(2L), zero biases, unit LayerNorm gains."""
    g = torch.Generator().manual_seed(int(seed))
    resid_std = 0.02 / math.sqrt(2 * shape.n_layer)
    params: dict[str, Tensor] = {}
    for name, s in shape.param_shapes():
        leaf = name.split(".")[-1]
        if leaf.endswith("_b"):
            params[name] = torch.zeros(s)
        elif leaf.startswith("ln"):
            params[name] = torch.ones(s)
        else:
            std = resid_std if leaf in ("proj_w", "fc2_w") else 0.02
            params[name] = torch.randn(s, generator=g) * std
    return params


class NanoTransformer(nn.Module):
    """One character-level GPT (nanoGPT layout). Weights are (in, out) so `x @ w` maps like the packed form."""

    def __init__(self, shape: Shape, seed: int = 0) -> None:
        super().__init__()
        self.shape = shape
        self.params = nn.ParameterDict(
            {k.replace(".", "_"): nn.Parameter(v) for k, v in init_params(shape, seed).items()}
        )

    def p(self, name: str) -> Tensor:
        return self.params[name.replace(".", "_")]

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        s = self.shape
        b, t = idx.shape
        d, nh = s.d_model, s.n_head
        x = F.embedding(idx, self.p("wte")) + self.p("wpe")[:t]
        for i in range(s.n_layer):
            h = F.layer_norm(x, (d,), self.p(f"h{i}.ln1_w"), self.p(f"h{i}.ln1_b"))
            q, k, v = (h @ self.p(f"h{i}.attn_w") + self.p(f"h{i}.attn_b")).split(d, dim=-1)
            q, k, v = (z.view(b, t, nh, d // nh).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            y = y.transpose(1, 2).reshape(b, t, d)
            x = x + y @ self.p(f"h{i}.proj_w") + self.p(f"h{i}.proj_b")
            h = F.layer_norm(x, (d,), self.p(f"h{i}.ln2_w"), self.p(f"h{i}.ln2_b"))
            h = F.gelu(h @ self.p(f"h{i}.fc_w") + self.p(f"h{i}.fc_b"))
            x = x + h @ self.p(f"h{i}.fc2_w") + self.p(f"h{i}.fc2_b")
        x = F.layer_norm(x, (d,), self.p("lnf_w"), self.p("lnf_b"))
        logits = x @ self.p("head_w")
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


class PackedNanoTransformer(nn.Module):
    """K independent NanoTransformers of one shape, computed together with batched matmuls.

    `flat` is a (K, P) fp32 buffer; each parameter is a (K, *shape) view into it. Model k only ever
    reads its own slice, so its gradient depends on its own loss alone (sum of per-model losses)."""

    def __init__(self, shape: Shape, seeds: list[int]) -> None:
        super().__init__()
        if not seeds:
            raise ValueError("a packed model needs at least one seed")
        self.shape = shape
        self.k = len(seeds)
        self.names = [n for n, _ in shape.param_shapes()]
        sizes = [math.prod(s) for _, s in shape.param_shapes()]
        # `flat` is plain storage; the parameters are leaf views into it. Autograd then returns one
        # small gradient per parameter (concatenated once into a (K, P) buffer by the trainer)
        # instead of scattering every slice's gradient into a full-size (K, P) tensor.
        self.register_buffer("flat", torch.empty(self.k, sum(sizes)))
        for k, seed in enumerate(seeds):
            p = init_params(shape, seed)
            self.flat[k] = torch.cat([p[n].reshape(-1) for n in self.names])
        self._slices: dict[str, tuple[int, int, tuple[int, ...]]] = {}
        off = 0
        for (name, s), n in zip(shape.param_shapes(), sizes):
            self._slices[name] = (off, off + n, s)
            off += n
        self.leaves: list[Tensor] = []
        self._bind_leaves()

    def _bind_leaves(self) -> None:
        """(Re)create the parameter views after `flat` moved (e.g. `.to(device)`)."""
        self.leaves = [self.view(n, self.flat).detach().requires_grad_() for n in self.names]
        self._leaf = dict(zip(self.names, self.leaves))

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        out = super()._apply(fn, recurse)
        self._bind_leaves()
        return out

    @property
    def n_params(self) -> int:
        """Parameters of ONE model of the pack."""
        return self.flat.shape[1]

    def view(self, name: str, flat: Tensor) -> Tensor:
        """Slice `name` of a (K, P) buffer (parameters, gradients, optimizer state) as (K, *shape)."""
        a, b, s = self._slices[name]
        return flat[:, a:b].view(flat.shape[0], *s)

    def flat_grad(self, grads: list[Tensor]) -> Tensor:
        """Concatenate per-parameter gradients (in `leaves` order) into one (K, P) buffer."""
        return torch.cat([g.reshape(self.k, -1) for g in grads], dim=1)

    def load_single(self, k: int, model: NanoTransformer) -> None:
        """Copy a single model's weights into slot k (tests and conversions)."""
        with torch.no_grad():
            self.flat[k] = torch.cat([model.p(n).detach().reshape(-1) for n in self.names])

    def losses(self, idx: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy of each model on its own batch: idx, targets (K, B, T) → (K,) fp32."""
        return packed_losses(self.shape, self._leaf, idx, targets)


# PYPHASE_RESIDUAL's values (`packed_losses`): unset (the default, `residual_mode`), the stream and
# its gradient in fp32, both in bf16, or the stream in fp32 and only its gradient in bf16.
RESIDUAL_MODES = ("", "fp32", "bf16", "bf16grad")


def residual_mode(device_type: str, compiled: bool | None = None) -> str:
    """The residual stream's numerics under autocast on `device_type`: PYPHASE_RESIDUAL when set,
    else "bf16" on CUDA without torch.compile and "fp32" elsewhere. `compiled` None: whether
    torch.compile is tracing now.

    Why the bf16 stream is the default on CUDA since session 45: the stream and its gradient in the
    autocast dtype halve the LayerNorm kernels' traffic; the K = 5, B = 256 step took 11.04 against
    11.53 ms (-4.2%) on an H200, and over four seeds of phase3a (40 runs against the same 40 with
    the earlier default) the final validation losses differ by a median of -0.007 nats, median
    |difference| 0.048, Wilcoxon signed-rank p = 0.55, 2 runs diverged in each
    (results/bench/bf16_stream_vs_bf16grad_4seeds_h200_b68557b.txt). Earlier defaults, for their bits:
    PYPHASE_RESIDUAL=bf16grad (the stream in fp32, its gradient in bf16: sessions 16-44, 4% faster
    than fp32 on the H100, results/bench/bf16grad_vs_fp32_3seeds.txt) and =fp32 (every result
    committed before session 16)."""
    env = os.environ.get("PYPHASE_RESIDUAL", "").lower()
    if env:
        return env
    if compiled is None:
        compiled = torch.compiler.is_compiling()
    return "bf16" if device_type == "cuda" and not compiled else "fp32"

# One block's parameters used by `transformer_block`, in `Shape.param_shapes` order (names under
# "h{i}."); its first LayerNorm (ln1_w, ln1_b) is applied by the block before it (or `embed_ln`).
BLOCK_PARAMS = ("attn_w", "attn_b", "proj_w", "proj_b", "ln2_w", "ln2_b", "fc_w", "fc_b", "fc2_w", "fc2_b")


def packed_losses(shape: Shape, w: dict[str, Tensor], idx: Tensor, targets: Tensor,
                  block: Callable[..., tuple[Tensor, Tensor]] | None = None,
                  head: Callable[..., Tensor] | None = None) -> Tensor:
    """Forward pass of K models with parameters `w[name]` of shape (K, *shape): per-model mean
    cross-entropy (K,) in fp32. A pure function, so `torch.compile` can trace it whole; `block` and
    `head` replace `transformer_block` and `head_losses` (with their compiled forms, for regional
    compilation: train.py)."""
    default_block = block is None
    block, head = block or transformer_block, head or head_losses
    kk, b, t = idx.shape
    d = shape.d_model
    # `residual_mode`. "bf16" (the default on CUDA uncompiled): the residual stream and its gradient
    # in the autocast dtype instead of fp32, half the LayerNorm kernels' traffic. "bf16grad": the
    # stream in fp32 (the forward pass's bits as with "fp32"), only its gradient in the autocast
    # dtype, through carriers (kernels.call_stream); where a kernel is not used, the gradient goes
    # back to fp32 (kernels.rejoin). Not with a compiled `block` (PYPHASE_COMPILE=regional/blocks),
    # which takes no carrier. benches/profile_step.py measures the modes' steps.
    mode = residual_mode(idx.device.type) if torch.is_autocast_enabled(idx.device.type) else "fp32"
    low = torch.get_autocast_dtype(idx.device.type) if mode in ("bf16", "bf16grad") else None
    # the embedding and the first LayerNorm: one kernel on CUDA (layernorm.py)
    x, h, c = embed_ln_stream(idx, w["wte"], w["wpe"], w["h0.ln1_w"], w["h0.ln1_b"], low if mode == "bf16" else None,
                              low if mode == "bf16grad" and default_block else None)
    x = x.view(kk, b, t, d)
    # Each block ends with the next LayerNorm (the next block's first, or the final one), which it
    # computes together with its MLP (mlp_block.py).
    for i in range(shape.n_layer):
        nxt = (f"h{i + 1}.ln1_w", f"h{i + 1}.ln1_b") if i + 1 < shape.n_layer else ("lnf_w", "lnf_b")
        ws = (*(w[f"h{i}.{n}"] for n in BLOCK_PARAMS), w[nxt[0]], w[nxt[1]])
        if c is None:
            x, h = block(x, h, *ws, shape.n_head)
        else:
            x, h, c = transformer_block_stream(x, h, *ws, shape.n_head, c)
    return head(h, w["head_w"], targets)


def transformer_block(x: Tensor, h: Tensor, attn_w: Tensor, attn_b: Tensor, proj_w: Tensor, proj_b: Tensor,
                      ln2_w: Tensor, ln2_b: Tensor, fc_w: Tensor, fc_b: Tensor, fc2_w: Tensor, fc2_b: Tensor,
                      next_w: Tensor, next_b: Tensor, n_head: int) -> tuple[Tensor, Tensor]:
    """One pre-LN block of K models: x (K, B, T, d) the residual stream, h (K, B·T, d) its first
    LayerNorm's output. Returns the new residual stream and the next LayerNorm's output (weights
    next_w, next_b: the next block's first LayerNorm, or the final one)."""
    x, h, _ = transformer_block_stream(x, h, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, fc2_w, fc2_b,
                                       next_w, next_b, n_head, None)
    return x, h


def transformer_block_stream(x: Tensor, h: Tensor, attn_w: Tensor, attn_b: Tensor, proj_w: Tensor,
                             proj_b: Tensor, ln2_w: Tensor, ln2_b: Tensor, fc_w: Tensor, fc_b: Tensor,
                             fc2_w: Tensor, fc2_b: Tensor, next_w: Tensor, next_b: Tensor, n_head: int,
                             c: Tensor | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """`transformer_block` with the stream's carrier c (K, B·T, d) or None (`mlp_block_stream`):
    → (x, h, the new stream's carrier or None)."""
    kk, b, t, d = x.shape
    if linear.supported(h, attn_w) and attention.supported_width(h, d, n_head):
        # The projection's bias added in its GEMM's epilogue, so the attention kernels load q, k, v
        # without adding it (linear.py); the attention op returns the bias's gradient. One cast of
        # the bias serves both ops.
        bias = attn_b.to(h.dtype)
        y = causal_attention(linear_bias(h, attn_w, bias.detach()), bias, b, t, n_head, bias_in_qkv=True)
    else:
        # The projection's bias is added inside the attention (as it reads q, k, v), see attention.py.
        y = causal_attention(linear.project(h, attn_w), attn_b, b, t, n_head)
    # add + LayerNorm, gelu(h @ fc_w + fc_b) @ fc2_w, add + next LayerNorm: one Triton kernel
    # forward on CUDA (mlp_block.py), the unfused ops elsewhere
    x, h, c = mlp_block_stream(x.reshape(kk, b * t, d), linear.project(y, proj_w), proj_b, ln2_w, ln2_b, fc_w, fc_b,
                               fc2_w, fc2_b, next_w, next_b, c)
    return x.view(kk, b, t, d), h, c


def head_losses(h: Tensor, head_w: Tensor, targets: Tensor) -> Tensor:
    """The final LayerNorm's output h (K, B·T, d), output head and per-model mean cross-entropy → (K,) fp32."""
    kk = h.shape[0]
    # logits h @ head_w and their cross-entropy: one Triton op on CUDA (head.py), stock bmm + CE elsewhere
    return mean_loss(head_ce(h, head_w, targets.reshape(kk, -1)))
