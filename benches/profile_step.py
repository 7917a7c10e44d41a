"""Where a packed training step spends its time, and what alternative forward passes would save.

Times 150 CUDA-graph-captured steps of one pack (K configs, batch B) for each variant of the
forward pass (with their energy, power, SM clock and power-capped share where NVML can be read:
`gpu_meter.py`), and writes a torch.profiler table of the first variant with kernel time per step
grouped (matmul, attention, LayerNorm, GELU, cross-entropy, other). Variants:
  default   pyphase.model.packed_losses under torch.compile, static shapes
  sdpa      the stock attention pyphase.attention replaced: bias add, q/k/v split and transposes,
            flash SDPA
  dynamic   default with the batch dimension dynamic, as `pyphase train` compiles it
  triton_mlp  PYPHASE_MLP=triton: pyphase.mlp's fused MLP kernels (the default on CUDA since 57fb4a4)
  torch_mlp   default with PYPHASE_MLP=torch (stock bmm/GELU MLP)
  torch_ln    default with PYPHASE_LN=torch (residual add + LayerNorm left to torch.compile)
  torch_head  default with PYPHASE_HEAD=torch (head + cross-entropy left to torch.compile)
  eager       nothing compiled (PYPHASE_COMPILE=none): custom ops and stock kernels in the CUDA graph
            (the residual stream's gradient in bf16, the default since session 16; the earlier
            default's fp32 gradient: eager+PYPHASE_RESIDUAL=fp32)
  sdpa_attn   default with PYPHASE_ATTENTION=sdpa
  autotune  the same with mode="max-autotune-no-cudagraphs" (Triton GEMM templates; slow set-up)
  flex      FlexAttention instead of scaled_dot_product_attention (on the stock layout)
  contig    q, k, v made contiguous before attention
  bf16res   residual stream in bf16 instead of fp32 (PYPHASE_RESIDUAL=bf16; changes numerics)
  eager_bf16res  eager with the bf16 residual stream
  eager_unfused, eager_bf16res_unfused  the same with PYPHASE_MLP_BLOCK=off (pyphase.mlp_block's
            fused add + LayerNorm, MLP, add + LayerNorm forward kernel off: three kernels)
  cudnn / efficient   attention backend toggles (set before compiling)
  VARIANT:attnN  VARIANT with the N-th of --attn-bwd's pyphase.attention backward configurations
  VARIANT:fwdN   VARIANT with the N-th of --attn-fwd's forward configurations (after :attnN if both)
  VARIANT+NAME=VALUE  VARIANT with the environment variable NAME set to VALUE (e.g. eager+PYPHASE_MLP_BLOCK=off;
            eager+BENCH_BLAS=cublaslt: torch's preferred BLAS library for the variant, cuBLAS by default)
CUDA only. Usage:
    python benches/profile_step.py --data PATH --k 5 --b 256 --variants default,flex --out DIR
"""
import argparse, os, time, json, re
from contextlib import nullcontext
import torch
from gpu_meter import Meter
from torch.profiler import profile, ProfilerActivity
from pyphase.config import RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer
from pyphase.model import packed_losses
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--data", default=None)
ap.add_argument("--k", type=int, default=5)
ap.add_argument("--b", type=int, default=256)
ap.add_argument("--variants", default="default")
ap.add_argument("--out", default=os.environ.get("OUT", "."))
ap.add_argument("--profile-all", action="store_true")
ap.add_argument("--ops", action="store_true", help="also profile 3 uncaptured steps of the first variant by torch op and "
                "input shape (which op launched which kernel), to OUT/ops_VARIANT_kK_bB.txt")
ap.add_argument("--mlp-config", default=None, help='pyphase.mlp launch configuration "FWD/BWD" (pyphase.mlp.set_config)')
ap.add_argument("--block-config", default=None, help='pyphase.mlp_block launch configuration "FWD/PRO,EPI" (pyphase.mlp_block.set_config)')
ap.add_argument("--ln-config", default=None, help='pyphase.layernorm launch configuration "rows,warps/rows,tiles,warps"')
ap.add_argument("--backward-programs", type=int, default=None, help="pyphase.kernels.BACKWARD_PROGRAMS (1: the launches' own row counts)")
ap.add_argument("--attn-bwd", default="", help='";"-separated pyphase.attention backward launch configurations (CONFIG["bwd"]); '
                'a variant named VARIANT:attnN runs with the N-th')
ap.add_argument("--attn-fwd", default="", help='";"-separated pyphase.attention forward launch configurations (CONFIG["fwd"]); '
                'a variant named VARIANT:fwdN runs with the N-th')
ap.add_argument("--embed-config", default=None, help='pyphase.layernorm embedding backward "positions,warps,programs"')
ap.add_argument("--linear-config", default=None, help='pyphase.linear QKV GEMM "rows,columns,warps,stages,programs per SM" '
                '(CONFIG["fwd"] and, with TMA descriptors, the default on GPUs of compute capability 9 or more, CONFIG["fwd_tma"])')
a = ap.parse_args()
corpus = load_corpus(a.data)
METER = Meter.open(torch.device("cuda", torch.cuda.current_device())) if torch.cuda.is_available() else None
if a.block_config:
    from pyphase import mlp_block
    mlp_block.set_config(a.block_config)
if a.mlp_config:
    from pyphase import mlp
    mlp.set_config(a.mlp_config)
if a.ln_config:
    from pyphase import layernorm
    fc, _, bc = a.ln_config.partition("/")
    layernorm.CONFIG.update(fwd=tuple(int(v) for v in fc.split(",")), bwd=tuple(int(v) for v in bc.split(",")))
if a.linear_config:
    from pyphase import linear
    linear.CONFIG["fwd"] = linear.CONFIG["fwd_tma"] = tuple(int(v) for v in a.linear_config.split(","))
if a.backward_programs:
    from pyphase import kernels
    kernels.BACKWARD_PROGRAMS = a.backward_programs
if a.embed_config:
    from pyphase import layernorm
    layernorm.CONFIG["embed_bwd"] = tuple(int(v) for v in a.embed_config.split(","))
K, B, variants, out = a.k, a.b, a.variants.split(","), a.out
os.makedirs(out, exist_ok=True)
res = []

def group(name):
    n = name.lower()
    for key, pat in (("fused_mlp", r"_mlp_"), ("head_ce", r"_head_"), ("attention", r"flash|fmha|sdpa|attention|attn|dot_do_o|convert_dq"), ("matmul", r"nvjet|gemm|cutlass|sm90_xmma|bmm|mm_|linear_bias|wgrad"),
                     ("layernorm", r"layer_norm|add_ln"), ("gelu", r"gelu"), ("cross_entropy", r"log_softmax|nll|softmax"),
                     ("embedding", r"embedding|embed_ln_bwd|index_put|scatter|sort|indexing|index_select|gather")):
        if re.search(pat, n):
            return key
    return "other"

import torch.nn.functional as F
from pyphase.linear import linear_bias_reference as _linear
from pyphase.layernorm import add_ln_reference


def _ln(x, weight, bias):
    return add_ln_reference(x, None, None, weight, bias)[1]

def make_losses(flex=False, contig=False, bf16res=False):
    if flex:
        from torch.nn.attention.flex_attention import flex_attention, create_block_mask
        bm = create_block_mask(lambda b, h, q, k: q >= k, B=None, H=None, Q_LEN=256, KV_LEN=256, device="cuda")
    def losses(shape, w, idx, targets):
        s = shape
        kk, b, t = idx.shape
        d, nh, v = s.d_model, s.n_head, s.vocab_size
        offs = (torch.arange(kk, device=idx.device) * v).view(kk, 1, 1)
        x = F.embedding(idx + offs, w["wte"].reshape(kk * v, d))
        x = (x + w["wpe"][:, None, :t]).reshape(kk, b * t, d)
        if bf16res:
            x = x.to(torch.bfloat16)
        for i in range(s.n_layer):
            h = _ln(x, w[f"h{i}.ln1_w"], w[f"h{i}.ln1_b"])
            qkv = _linear(h, w[f"h{i}.attn_w"], w[f"h{i}.attn_b"])
            q, k_, v_ = (z.reshape(kk * b, t, nh, d // nh).transpose(1, 2) for z in qkv.split(d, dim=-1))
            if contig:
                q, k_, v_ = q.contiguous(), k_.contiguous(), v_.contiguous()
            if flex:
                y = flex_attention(q, k_, v_, block_mask=bm)
            else:
                y = F.scaled_dot_product_attention(q, k_, v_, is_causal=True)
            y = y.transpose(1, 2).reshape(kk, b * t, d)
            x = x + _linear(y, w[f"h{i}.proj_w"], w[f"h{i}.proj_b"])
            h = _ln(x, w[f"h{i}.ln2_w"], w[f"h{i}.ln2_b"])
            h = F.gelu(_linear(h, w[f"h{i}.fc_w"], w[f"h{i}.fc_b"]))
            x = x + _linear(h, w[f"h{i}.fc2_w"], w[f"h{i}.fc2_b"])
            if bf16res:
                x = x.to(torch.bfloat16)
        x = _ln(x, w["lnf_w"], w["lnf_b"])
        logits = torch.bmm(x, w["head_w"].to(x.dtype) if not torch.is_autocast_enabled() else w["head_w"])
        ce = F.cross_entropy(logits.float().reshape(-1, v), targets.reshape(-1), reduction="none")
        return ce.view(kk, b * t).mean(dim=1)
    return losses

from pyphase import attention
attn_default = dict(attention.CONFIG)


def regs_spills() -> dict[str, list[list[int]]]:
    """Registers and spills per thread of the step's main kernels: each specialisation compiled so
    far in this process (all variants' launches)."""
    from pyphase import mlp, mlp_block
    out = {}
    for kern in (attention._attn_fwd_kernel, attention._attn_bwd_dq_kernel, attention._attn_bwd_dkdv_kernel,
                 mlp._mlp_bwd_dw_kernel, mlp_block._mlp_block_fwd_kernel):
        out[kern.fn.__name__] = sorted({(ck.n_regs, ck.n_spills) for cache in kern.device_caches.values()
                                        for ck in (cache[0] if isinstance(cache, tuple) else cache).values()
                                        if getattr(ck, "n_regs", None) is not None})
    return out
attn_bwd = [tuple(int(v) for v in c.split(",")) for c in a.attn_bwd.split(";") if c.strip()]
attn_fwd = [tuple(int(v) for v in c.split(",")) for c in a.attn_fwd.split(";") if c.strip()]
env_set: list[str] = []
for var_name in variants:
    for key in env_set:
        os.environ.pop(key, None)
    var, *env = var_name.split("+")
    var, _, fwd_i = var.partition(":fwd")
    var, _, attn_i = var.partition(":attn")
    attention.CONFIG.update(attn_default)
    if attn_i:
        attention.CONFIG["bwd"] = attn_bwd[int(attn_i)]
    if fwd_i:
        attention.CONFIG["fwd"] = attn_fwd[int(fwd_i)]
    torch._dynamo.reset()
    t0 = time.perf_counter()
    cfgs = [RunConfig(experiment="p", batch_size=B, lr=1e-3*(i+1), gradient_clip=1.0, seed=i, steps=400,
                      eval_interval=10**6, eval_windows=4) for i in range(K)]
    tr = PackTrainer(cfgs, corpus, "cuda", compile=False)
    torch.backends.cuda.enable_cudnn_sdp(var == "cudnn")
    if var == "efficient":
        torch.backends.cuda.enable_flash_sdp(False)
    else:
        torch.backends.cuda.enable_flash_sdp(True)
    mode = {"autotune": "max-autotune-no-cudagraphs"}.get(var)
    if var == "autotune_cd":
        import torch._inductor.config as ic
        ic.coordinate_descent_tuning = True
        mode = "max-autotune-no-cudagraphs"
    fn = packed_losses
    os.environ.pop("PYPHASE_MLP", None)
    os.environ.pop("PYPHASE_ATTENTION", None)
    os.environ.pop("PYPHASE_LN", None)
    os.environ.pop("PYPHASE_HEAD", None)
    if var == "torch_ln":
        os.environ["PYPHASE_LN"] = "torch"
    if var == "torch_head":
        os.environ["PYPHASE_HEAD"] = "torch"
    if var in ("triton_mlp", "torch_mlp"):
        os.environ["PYPHASE_MLP"] = var.split("_")[0]
    if var == "sdpa_attn":
        os.environ["PYPHASE_ATTENTION"] = "sdpa"
    os.environ.pop("PYPHASE_RESIDUAL", None)
    if var in ("bf16res", "eager_bf16res", "eager_bf16res_unfused"):
        os.environ["PYPHASE_RESIDUAL"] = "bf16"
    os.environ.pop("PYPHASE_MLP_BLOCK", None)
    if var.endswith("_unfused"):
        os.environ["PYPHASE_MLP_BLOCK"] = "off"
    # VARIANT+NAME=VALUE: set after the variants' own switches above, so it overrides them
    env_set = [kv.partition("=")[0] for kv in env]
    os.environ.update(kv.partition("=")[::2] for kv in env)
    # BENCH_BLAS=cublas|cublaslt (as VARIANT+BENCH_BLAS=...): torch's preferred BLAS library for every
    # torch.bmm of the variant's step (the output projection, the input and weight gradients)
    torch.backends.cuda.preferred_blas_library(os.environ.get("BENCH_BLAS", "cublas"))
    if var in ("sdpa", "flex", "contig"):
        fn = make_losses(flex=var == "flex", contig=var == "contig")
    if var == "dynamic":  # what `pyphase train` runs: batch dimension marked dynamic (train.PackTrainer._step)
        tr.use_compile = True
        tr._losses = torch.compile(fn, dynamic=None)
    elif not var.startswith("eager"):
        tr._losses = torch.compile(fn, dynamic=False, mode=mode)
    tr.capture()
    for _ in range(10):
        tr.step()
    torch.cuda.synchronize()
    setup = time.perf_counter() - t0
    n = 150
    with METER.window() if METER is not None else nullcontext({}) as energy:  # filled as it closes
        t1 = time.perf_counter()
        for _ in range(n):
            tr.step()
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t1) / n
    tok = K * B * 256 / dt
    mfu = tok * tr.shape.flops_per_token() / 989e12
    loss = tr.state.loss[159].tolist()
    r = dict(variant=var_name, attn_fwd=attention.CONFIG["fwd"], attn_bwd=attention.CONFIG["bwd"], K=K, B=B, ms_per_step=dt * 1e3, mtok_s=tok / 1e6, mfu=mfu, setup_s=setup, loss_step160=loss)
    if energy:  # the timed steps' energy (the board at its power cap lowers the SM clock: gpu_meter.py)
        r.update(joules_per_step=energy["joules"] / n, watts=energy["watts"], sm_mhz=energy["sm_mhz"],
                 power_capped=energy["power_capped"])
    from pyphase import mlp_block
    if a.block_config:
        r["block_config"] = a.block_config
    kern = mlp_block.LAST.pop("fwd", None)
    if kern is not None and not var.endswith("_unfused"):
        r["block_regs_spills"] = [getattr(kern, "n_regs", None), getattr(kern, "n_spills", None)]
    r["regs_spills"] = regs_spills()
    print(json.dumps(r), flush=True)
    if var_name == variants[0] or a.profile_all:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                tr.step()
            torch.cuda.synchronize()
        ka = prof.key_averages()
        tot = {}
        for e in ka:
            t = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
            if t and e.key and not e.key.startswith("ProfilerStep"):
                tot[group(e.key)] = tot.get(group(e.key), 0) + t / 5 / 1e3
        r["profile_ms_per_step"] = tot
        print(var, "per-step kernel ms by group:", json.dumps({k: round(v, 3) for k, v in sorted(tot.items(), key=lambda x: -x[1])}))
        table = ka.table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=90)
        open(f"{out}/profile_{var}_k{K}_b{B}.txt", "w").write(table)
        print(table[:6000])
    if var_name == variants[0] and a.ops:
        snap = {k: v.clone() for k, v in tr.state.tensors().items()}
        flat0 = tr.model.flat.clone()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
            for _ in range(3):
                tr._step()
            torch.cuda.synchronize()
        tr._restore(snap, flat0)
        table = prof.key_averages(group_by_input_shape=True).table(
            sort_by="self_cuda_time_total", row_limit=80, max_name_column_width=40, max_shapes_column_width=70)
        open(f"{out}/ops_{var}_k{K}_b{B}.txt", "w").write(table)
    res.append(r)
    del tr
    torch.cuda.empty_cache()
json.dump(res, open(f"{out}/variants_k{K}_b{B}.json", "w"), indent=1)
