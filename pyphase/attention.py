"""Causal self-attention read straight from the packed qkv projection, in Triton (CUDA).

The packed model's QKV projection produces one (K, B·T, 3d) tensor without its bias. The stock path
(`scaled_dot_product_attention`) needs the bias added and q, k, v split and transposed to
(K·B, heads, T, head_dim) copies first, and its backward returns dq, dk, dv separately, to be
concatenated back into the (K, B·T, 3d) layout of the projection's gradient. Measured on the H100
for K = 5, B = 256, T = 256, head dim 32 (results/bench/profile_k5_b256_flash_a0f7d8f.txt), the
flash kernels plus those copies took ~6 ms of a 22 ms step.

These kernels read q, k, v (adding the bias as they load, unless the projection already holds it:
`bias_in_qkv`, the packed model's path on CUDA, `pyphase.linear`) from the projection's output in place,
write the attention output in the (K, B·T, d) layout the output projection reads, and write
dq, dk, dv straight into one (K, B·T, 3d) gradient. The algorithm is FlashAttention-2's (online
softmax forward saving the log-sum-exp; backward recomputing probabilities, one pass for dq per
query block, which also computes the rows' rowsum(o * do), then one for dk/dv per key block),
specialised to short contexts and small heads. Only the tiles that cross the diagonal apply the causal
mask, and bounds masks only where the context is not a multiple of the blocks (`_tiles`).

Numerics follow the stock path under bf16 autocast: q, k, v are rounded to the input's dtype after
the bias add, scores and softmax in fp32, probabilities rounded to the input's dtype before the
product with v. `attention_reference` is the stock computation the tests compare against; on the
CPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, tests only).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor

from pyphase.kernels import alive_mask, backward_op, call, launch, pad_width, register_autograd, register_cap, sum_parts

try:
    import triton
    import triton.language as tl

    from pyphase.kernels import mul_rn
except ImportError:  # pragma: no cover - torch's CUDA wheels bring triton
    triton = None

LOG2E = 1.4426950408889634


def supported(qkv: Tensor, n_head: int) -> bool:
    """Whether the Triton kernels handle this input (else use `attention_reference`).
    PYPHASE_ATTENTION=sdpa in the environment turns them off."""
    return supported_width(qkv, qkv.shape[-1] // 3, n_head)


def supported_width(x: Tensor, d: int, n_head: int) -> bool:
    """`supported` for a projection of width 3d on x's device and in x's dtype."""
    if triton is None or os.environ.get("PYPHASE_ATTENTION", "").lower() == "sdpa":
        return False
    hd = d // n_head
    return x.is_cuda and hd in (16, 32, 64, 128) and x.dtype in (torch.bfloat16, torch.float16, torch.float32)


def attention_reference(qkv: Tensor, bias: Tensor, n_seq: int, t: int, n_head: int,
                        bias_in_qkv: bool = False) -> Tensor:
    """The stock computation: (K, B·T, 3d) projection without bias, (K, 3d) bias → (K, B·T, d).
    With bias_in_qkv the projection already holds the bias (its gradient flows through qkv only)."""
    kk, n, d3 = qkv.shape
    d = d3 // 3
    if not bias_in_qkv:
        qkv = qkv + bias[:, None].to(qkv.dtype)
    q, k, v = (z.reshape(kk * n_seq, t, n_head, d // n_head).transpose(1, 2) for z in qkv.split(d, dim=-1))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return y.transpose(1, 2).reshape(kk, n, d)


# Launch parameters (block rows, warps, pipeline stages); blocks shrink for contexts shorter than
# a block. benches/bench_attention.py times alternatives.
#   fwd: (query block, key block, warps, stages)
#   bwd: dk/dv pass (query step, key block), dq pass (query block, key step), warps, stages
# With the bias already in q, k, v (`bias_in_qkv`, the packed model since pyphase.linear) a backward
# launch of (32, 64, 64, 32, 4, 3) made the K = 5 step 1.0-1.2% faster at B = 256 and 1.7-1.8% at
# B = 128 (results/bench/attn_sweep_bias_in_qkv_h100_4518b8e.txt), but its smaller blocks sum the
# bias gradient's partial sums in another order, so training gives other bits (the losses at step
# 160 differ in the 3rd decimal); kept as it is, so runs stay comparable bit for bit with earlier ones.
# maxnreg: register caps of the forward, dq and dk/dv kernels (0: none). At 168 registers (4 spilled;
# 186 uncapped) three dk/dv programs share an SM instead of two: the K = 5 step 13.793 against
# 13.859 / 13.885 ms at B = 256, 7.442 against 7.501 / 7.500 ms at B = 128, the same losses
# (attn_maxnreg_h100_5b07b5e.txt). Session 12 had found caps without gain when the pass needed 231
# registers (maxnreg_270343f.diff).
CONFIG: dict[str, tuple[int, ...]] = {"fwd": (64, 64, 4, 3), "bwd": (32, 128, 128, 32, 4, 3), "maxnreg": (0, 0, 168)}


def _launch(kind: str, t: int) -> tuple[int, ...]:
    *blocks, warps, stages = CONFIG[kind]
    small = pad_width(t)
    return (*(min(b, small) for b in blocks), warps, stages)


if triton is not None:

    @triton.jit
    def _head_bias(BIAS, model, h, offs_d, D: tl.constexpr, HD: tl.constexpr):
        """Head h's q, k and v bias of one model (fp32), for kernels that add it as they load (unused,
        and so compiled away, when the projection holds it already)."""
        base = BIAS + model * 3 * D + h * HD + offs_d
        return (tl.load(base).to(tl.float32), tl.load(base + D).to(tl.float32),
                tl.load(base + 2 * D).to(tl.float32))

    @triton.jit
    def _biased(tile, bias, dt, BIAS_IN_QKV: tl.constexpr):
        """A loaded q, k or v tile as the products take it: as loaded when the projection holds the
        bias (BIAS_IN_QKV), else plus `bias` (broadcast to the tile) in fp32, rounded to dt."""
        if BIAS_IN_QKV:
            out = tile
        else:
            out = (tile.to(tl.float32) + bias).to(dt)
        return out

    @triton.jit
    def _load(ptr, ok, EVEN: tl.constexpr):
        """The tile at ptr: as it is where EVEN (every row in the sequence), else zeros where not ok."""
        if EVEN:
            out = tl.load(ptr)
        else:
            out = tl.load(ptr, mask=ok, other=0.0)
        return out

    @triton.jit
    def _store(ptr, value, ok, EVEN: tl.constexpr):
        """Store value at ptr: all of it where EVEN, else where ok."""
        if EVEN:
            tl.store(ptr, value)
        else:
            tl.store(ptr, value, mask=ok)

    @triton.jit
    def _fwd_tile(q, QKV, kv_base, start_n, offs_n, offs_m, offs_d, m_i, l_i, acc, bk, bv, qk_scale, T, dt,
                  D: tl.constexpr, BIAS_IN_QKV: tl.constexpr, MASK: tl.constexpr, EVEN: tl.constexpr,
                  RN: tl.constexpr):
        """One key block of the forward loop: the online softmax's running max, sum and output
        updated with keys `cols`. MASK: the causal mask (and, unless EVEN, the sequence's end)
        applied to the scores; off the diagonal every key is visible and in the sequence, so the
        tile is used as it is (the same values: the mask keeps everything there)."""
        cols = start_n + offs_n
        kv_row = kv_base + cols[:, None] * (3 * D)
        n_ok = cols < T
        k = _biased(_load(QKV + kv_row + D, n_ok[:, None], EVEN), bk[None, :], dt, BIAS_IN_QKV)
        v = _biased(_load(QKV + kv_row + 2 * D, n_ok[:, None], EVEN), bv[None, :], dt, BIAS_IN_QKV)
        qk = mul_rn(tl.dot(q, tl.trans(k)), qk_scale, RN)  # not fused with the subtraction that follows
        if MASK:
            keep = (offs_m - start_n)[:, None] >= offs_n[None, :]  # cols <= rows, in 32 bits
            if not EVEN:
                keep = keep & n_ok[None, :]
            qk = tl.where(keep, qk, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(qk, 1))
        p = tl.exp2(qk - m_new[:, None])
        alpha = tl.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(dt), v)
        return m_new, l_i, acc

    @triton.jit
    def _attn_fwd_kernel(ALIVE, QKV, BIAS, O, LSE, T, N_SEQ, N_HEAD: tl.constexpr, D: tl.constexpr, HD: tl.constexpr,
                    qk_scale, BM: tl.constexpr, BN: tl.constexpr, BIAS_IN_QKV: tl.constexpr, EVEN: tl.constexpr = False,
                    DIAG: tl.constexpr = False, RN: tl.constexpr = False):
        # EVEN: T is a multiple of BM and BN (no bounds masks); DIAG: the causal mask only on the key
        # blocks that reach the diagonal (`_fwd_tile`), else on every block; RN: `kernels.mul_rn`
        pid_m = tl.program_id(0)
        pid_sh = tl.program_id(1)
        s = pid_sh // N_HEAD
        h = pid_sh % N_HEAD
        model = s // N_SEQ
        if tl.load(ALIVE + model) == 0:  # a frozen model (kernels.skipping_dead)
            return
        row0 = s.to(tl.int64) * T
        offs_m = pid_m * BM + tl.arange(0, BM)
        offs_n = tl.arange(0, BN)
        offs_d = tl.arange(0, HD)
        dt = QKV.dtype.element_ty
        m_ok = offs_m < T
        q_ptr = QKV + (row0 + offs_m[:, None]) * (3 * D) + h * HD + offs_d[None, :]
        bq, bk, bv = _head_bias(BIAS, model, h, offs_d, D, HD)
        q = _biased(_load(q_ptr, m_ok[:, None], EVEN), bq[None, :], dt, BIAS_IN_QKV)
        m_i = tl.full([BM], float("-inf"), tl.float32)
        l_i = tl.zeros([BM], tl.float32)
        acc = tl.zeros([BM, HD], tl.float32)
        kv_base = row0 * (3 * D) + h * HD + offs_d[None, :]
        hi = tl.minimum((pid_m + 1) * BM, T)
        # key blocks wholly before the query block's first row: every key visible to every query
        mid = (pid_m * BM // BN) * BN if DIAG else 0
        for start_n in range(0, mid, BN):
            m_i, l_i, acc = _fwd_tile(q, QKV, kv_base, start_n, offs_n, offs_m, offs_d, m_i, l_i, acc, bk, bv,
                                      qk_scale, T, dt, D, BIAS_IN_QKV, False, True, RN)
        for start_n in range(mid, hi, BN):
            m_i, l_i, acc = _fwd_tile(q, QKV, kv_base, start_n, offs_n, offs_m, offs_d, m_i, l_i, acc, bk, bv,
                                      qk_scale, T, dt, D, BIAS_IN_QKV, True, EVEN, RN)
        acc = acc / l_i[:, None]
        o_ptr = O + (row0 + offs_m[:, None]) * D + h * HD + offs_d[None, :]
        _store(o_ptr, acc.to(O.dtype.element_ty), m_ok[:, None], EVEN)
        _store(LSE + pid_sh.to(tl.int64) * T + offs_m, m_i + tl.log2(l_i), m_ok, EVEN)

    @triton.jit
    def _dkdv_tile(k, v, dk, dv, QKV, DO, lse_base, delta_base, row0, h, rows, offs_n, offs_d, bq, qk_scale, T, dt,
                   D: tl.constexpr, HD: tl.constexpr, BIAS_IN_QKV: tl.constexpr, MASK: tl.constexpr,
                   EVEN: tl.constexpr):
        """One query step of the dk/dv loop: dk, dv of the key block updated with queries `rows`.
        MASK: the causal mask (and, unless EVEN, the sequence's end) on the probabilities; where
        every query sees every key of the block, the tile is used as it is (the same values). The
        mask selects after exp2, so with or without it the score's scaling and the subtraction of
        the log-sum-exp fuse into one multiply-add alike (unlike the forward pass: `kernels.mul_rn`)."""
        q_ptr = QKV + (row0 + rows[None, :]) * (3 * D) + h * HD + offs_d[:, None]  # (HD, BM)
        do_ptr = DO + (row0 + rows[:, None]) * D + h * HD + offs_d[None, :]
        m_ok = rows < T
        q_t = _biased(_load(q_ptr, m_ok[None, :], EVEN), bq[:, None], dt, BIAS_IN_QKV)
        do = _load(do_ptr, m_ok[:, None], EVEN).to(dt)  # (BM, HD)
        lse = _load(lse_base + rows, m_ok, EVEN)
        delta = _load(delta_base + rows, m_ok, EVEN)
        qk_t = tl.dot(k, q_t) * qk_scale  # (BN, BM)
        if MASK:
            keep = rows[None, :] >= offs_n[:, None]
            if not EVEN:
                keep = keep & m_ok[None, :]
            p_t = tl.where(keep, tl.exp2(qk_t - lse[None, :]), 0.0)
        else:
            p_t = tl.exp2(qk_t - lse[None, :])
        dv += tl.dot(p_t.to(dt), do)
        dp_t = tl.dot(v, tl.trans(do))
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(dt), tl.trans(q_t))
        return dk, dv

    @triton.jit
    def _attn_bwd_dkdv_kernel(ALIVE, QKV, BIAS, DO, LSE, DELTA, DQKV, DB, T, N_SEQ, PARTS, N_HEAD: tl.constexpr,
                              D: tl.constexpr, HD: tl.constexpr, qk_scale, sm_scale, BM: tl.constexpr,
                              BN: tl.constexpr, BIAS_IN_QKV: tl.constexpr, EVEN: tl.constexpr = False,
                              DIAG: tl.constexpr = False):
        """dk, dv of one block of BN keys, looping over the queries that see them in steps of BM.
        Queries are loaded transposed (HD, BM) so every product is a plain tile product. EVEN and
        DIAG as for the forward kernel (DIAG: the mask only on query steps before the block's last key)."""
        pid_n = tl.program_id(0)
        pid_sh = tl.program_id(1)
        s = pid_sh // N_HEAD
        h = pid_sh % N_HEAD
        model = s // N_SEQ
        if tl.load(ALIVE + model) == 0:  # a frozen model (kernels.skipping_dead)
            return
        row0 = s.to(tl.int64) * T
        offs_n = pid_n * BN + tl.arange(0, BN)
        offs_m = tl.arange(0, BM)
        offs_d = tl.arange(0, HD)
        dt = QKV.dtype.element_ty
        n_ok = offs_n < T
        kv_row = (row0 + offs_n[:, None]) * (3 * D) + h * HD + offs_d[None, :]
        bq, bk, bv = _head_bias(BIAS, model, h, offs_d, D, HD)
        k = _biased(tl.load(QKV + kv_row + D, mask=n_ok[:, None], other=0.0), bk[None, :], dt, BIAS_IN_QKV)
        v = _biased(tl.load(QKV + kv_row + 2 * D, mask=n_ok[:, None], other=0.0), bv[None, :], dt, BIAS_IN_QKV)
        dk = tl.zeros([BN, HD], tl.float32)
        dv = tl.zeros([BN, HD], tl.float32)
        lse_base = LSE + pid_sh.to(tl.int64) * T
        delta_base = DELTA + pid_sh.to(tl.int64) * T
        lo = (pid_n * BN // BM) * BM
        # query steps from `mid` on: every row at or after the block's last key, so no mask
        mid = tl.minimum(tl.cdiv((pid_n + 1) * BN - 1, BM) * BM, T) if DIAG else T
        for start_m in range(lo, mid, BM):
            dk, dv = _dkdv_tile(k, v, dk, dv, QKV, DO, lse_base, delta_base, row0, h, start_m + offs_m, offs_n, offs_d,
                                bq, qk_scale, T, dt, D, HD, BIAS_IN_QKV, True, EVEN)
        for start_m in range(mid, T, BM):
            dk, dv = _dkdv_tile(k, v, dk, dv, QKV, DO, lse_base, delta_base, row0, h, start_m + offs_m, offs_n, offs_d,
                                bq, qk_scale, T, dt, D, HD, BIAS_IN_QKV, False, EVEN)
        # the key block's offsets computed again, written otherwise than kv_row above, so the compiler
        # does not keep those live in registers through the loop
        offs_e = pid_n * BN + tl.arange(0, BN)
        out = row0 * (3 * D) + (offs_e[:, None] * (3 * D) + (h * HD + offs_d[None, :]))
        dk = (dk * sm_scale).to(DQKV.dtype.element_ty)
        dv = dv.to(DQKV.dtype.element_ty)
        tl.store(DQKV + out + D, dk, mask=n_ok[:, None])
        tl.store(DQKV + out + 2 * D, dv, mask=n_ok[:, None])
        # The bias gradient is the column sum of the stored gradient (rows outside T hold zeros):
        # this block's share, in its own row of the partial sums (added up in a fixed order later).
        part = DB + (model * PARTS + (s % N_SEQ) * tl.num_programs(0) + pid_n) * 3 * D
        tl.store(part + D + h * HD + offs_d, tl.sum(dk.to(tl.float32), 0))
        tl.store(part + 2 * D + h * HD + offs_d, tl.sum(dv.to(tl.float32), 0))

    @triton.jit
    def _dq_tile(q, do, dq, lse, delta, QKV, row0, h, start_n, offs_n, offs_m, offs_d, bk, bv, qk_scale, T, dt, D: tl.constexpr,
                 HD: tl.constexpr, BIAS_IN_QKV: tl.constexpr, MASK: tl.constexpr, EVEN: tl.constexpr):
        """One key step of the dq loop: dq of the query block updated with keys `cols` (MASK as in
        `_dkdv_tile`)."""
        cols = start_n + offs_n
        kv_t = (row0 + cols[None, :]) * (3 * D) + h * HD + offs_d[:, None]
        n_ok = cols < T
        k_t = _biased(_load(QKV + kv_t + D, n_ok[None, :], EVEN), bk[:, None], dt, BIAS_IN_QKV)
        v_t = _biased(_load(QKV + kv_t + 2 * D, n_ok[None, :], EVEN), bv[:, None], dt, BIAS_IN_QKV)
        qk = tl.dot(q, k_t) * qk_scale
        if MASK:
            keep = (offs_m - start_n)[:, None] >= offs_n[None, :]  # cols <= rows, in 32 bits
            if not EVEN:
                keep = keep & n_ok[None, :]
            p = tl.where(keep, tl.exp2(qk - lse[:, None]), 0.0)
        else:
            p = tl.exp2(qk - lse[:, None])
        dp = tl.dot(do, v_t)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(dt), tl.trans(k_t))
        return dq

    @triton.jit
    def _attn_bwd_dq_kernel(ALIVE, QKV, BIAS, O, DO, LSE, DELTA, DQKV, DB, T, N_SEQ, PARTS, N_HEAD: tl.constexpr,
                            D: tl.constexpr, HD: tl.constexpr, qk_scale, sm_scale, BM: tl.constexpr,
                            BN: tl.constexpr, BIAS_IN_QKV: tl.constexpr, EVEN: tl.constexpr = False,
                            DIAG: tl.constexpr = False):
        """dq of one block of BM queries, looping over the keys they see in steps of BN (keys and
        values loaded transposed, (HD, BN)). Computes the rows' delta = rowsum(o * do) and writes
        it for the dk/dv pass, which runs after this one. EVEN and DIAG as for the forward kernel."""
        pid_m = tl.program_id(0)
        pid_sh = tl.program_id(1)
        s = pid_sh // N_HEAD
        h = pid_sh % N_HEAD
        model = s // N_SEQ
        if tl.load(ALIVE + model) == 0:  # a frozen model (kernels.skipping_dead)
            return
        row0 = s.to(tl.int64) * T
        offs_m = pid_m * BM + tl.arange(0, BM)
        offs_n = tl.arange(0, BN)
        offs_d = tl.arange(0, HD)
        dt = QKV.dtype.element_ty
        m_ok = offs_m < T
        q_ptr = QKV + (row0 + offs_m[:, None]) * (3 * D) + h * HD + offs_d[None, :]
        bq, bk, bv = _head_bias(BIAS, model, h, offs_d, D, HD)
        q = _biased(tl.load(q_ptr, mask=m_ok[:, None], other=0.0), bq[None, :], dt, BIAS_IN_QKV)
        o_ptr = (row0 + offs_m[:, None]) * D + h * HD + offs_d[None, :]
        do = tl.load(DO + o_ptr, mask=m_ok[:, None], other=0.0)
        delta = tl.sum(tl.load(O + o_ptr, mask=m_ok[:, None], other=0.0).to(tl.float32) * do.to(tl.float32), 1)
        tl.store(DELTA + pid_sh.to(tl.int64) * T + offs_m, delta, mask=m_ok)
        do = do.to(dt)
        lse = tl.load(LSE + pid_sh.to(tl.int64) * T + offs_m, mask=m_ok, other=0.0)
        dq = tl.zeros([BM, HD], tl.float32)
        hi = tl.minimum((pid_m + 1) * BM, T)
        # key steps wholly before the query block's first row: every key visible to every query
        mid = (pid_m * BM // BN) * BN if DIAG else 0
        for start_n in range(0, mid, BN):
            dq = _dq_tile(q, do, dq, lse, delta, QKV, row0, h, start_n, offs_n, offs_m, offs_d, bk, bv, qk_scale, T,
                          dt, D, HD, BIAS_IN_QKV, False, True)
        for start_n in range(mid, hi, BN):
            dq = _dq_tile(q, do, dq, lse, delta, QKV, row0, h, start_n, offs_n, offs_m, offs_d, bk, bv, qk_scale, T,
                          dt, D, HD, BIAS_IN_QKV, True, EVEN)
        out = (row0 + offs_m[:, None]) * (3 * D) + h * HD + offs_d[None, :]
        dq = (dq * sm_scale).to(DQKV.dtype.element_ty)
        tl.store(DQKV + out, dq, mask=m_ok[:, None])
        part = DB + (model * PARTS + (s % N_SEQ) * tl.num_programs(0) + pid_m) * 3 * D
        tl.store(part + h * HD + offs_d, tl.sum(tl.where(m_ok[:, None], dq.to(tl.float32), 0.0), 0))


def _tiles(t: int, bm: int, bn: int) -> dict[str, bool]:
    """The kernels' tile switches: EVEN where the context is a multiple of both blocks (no bounds
    masks) and DIAG, the causal mask only on the tiles that cross the diagonal, unless
    PYPHASE_ATTN_MASK=all (every tile masked, as before session 18); the forward kernel also takes
    RN (`kernels.mul_rn`). None changes a value, only the instructions. Why: on the H100 the ALU pipe
    (the masks' integer compares and selects) was the attention kernels' busiest, 36-61%
    (results/bench/ncu_sections_k5_b256_e648aca.txt); with these switches the loops issue about
    half the ALU instructions, but the K = 5 step gained only 0.3-0.6% (phase3a's packs side by
    side 18.793 against 18.879 ms, the same bits; bench_switch_attn_mask_f151ffc.txt)."""
    every = os.environ.get("PYPHASE_ATTN_MASK", "").lower() == "all"
    return dict(EVEN=t % bm == 0 and t % bn == 0 and not every, DIAG=not every)


def _dims(qkv: Tensor, n_seq: int, t: int, n_head: int) -> tuple[int, int, int, float]:
    kk, n, d3 = qkv.shape
    d = d3 // 3
    if n != n_seq * t or d3 != 3 * d or d % n_head:
        raise ValueError(f"qkv of shape {tuple(qkv.shape)} does not hold {n_seq} sequences of {t} with {n_head} heads")
    return kk * n_seq, d, d // n_head, 1.0 / math.sqrt(d // n_head)


@torch.library.custom_op("pyphase::causal_attention_fwd", mutates_args=())
def _attn_fwd(qkv: Tensor, bias: Tensor, n_seq: int, t: int, n_head: int,
              bias_in_qkv: bool) -> tuple[Tensor, Tensor]:
    """(K, B·T, 3d) projection without bias (with it if bias_in_qkv), (K, 3d) bias → output (K, B·T, d),
    log2-sum-exp (K·B·heads, T)."""
    qkv, bias = qkv.contiguous(), bias.contiguous()
    seqs, d, hd, scale = _dims(qkv, n_seq, t, n_head)
    o = qkv.new_empty(qkv.shape[0], qkv.shape[1], d)
    lse = torch.empty(seqs * n_head, t, device=qkv.device, dtype=torch.float32)
    bm, bn, warps, stages = _launch("fwd", t)
    grid = (triton.cdiv(t, bm), seqs * n_head)
    launch(_attn_fwd_kernel, grid)(alive_mask(qkv.shape[0], qkv.device), qkv, bias, o, lse, t, n_seq, n_head, d, hd, scale * LOG2E, bm, bn, bias_in_qkv,
                                   **_tiles(t, bm, bn), RN=qkv.is_cuda, num_warps=warps, num_stages=stages,
                                   **register_cap(CONFIG["maxnreg"][0], qkv))
    return o, lse


@_attn_fwd.register_fake
def _(qkv: Tensor, bias: Tensor, n_seq: int, t: int, n_head: int, bias_in_qkv: bool) -> tuple[Tensor, Tensor]:
    seqs, d, _, _ = _dims(qkv, n_seq, t, n_head)
    return qkv.new_empty(qkv.shape[0], qkv.shape[1], d), qkv.new_empty(seqs * n_head, t, dtype=torch.float32)


@torch.library.custom_op("pyphase::causal_attention_bwd", mutates_args=())
def _attn_bwd(do: Tensor, qkv: Tensor, bias: Tensor, o: Tensor, lse: Tensor, n_seq: int, t: int,
              n_head: int, bias_in_qkv: bool) -> tuple[Tensor, Tensor]:
    """Gradients of `_attn_fwd`'s output w.r.t. the projection, as one (K, B·T, 3d) tensor, and
    w.r.t. the bias, (K, 3d) fp32: the column sums of the former, from per-block partial sums added in
    a fixed order (the same bits every run)."""
    do, qkv, bias, o = do.contiguous(), qkv.contiguous(), bias.contiguous(), o.contiguous()
    seqs, d, hd, scale = _dims(qkv, n_seq, t, n_head)
    dqkv = torch.empty_like(qkv)
    delta = torch.empty(seqs * n_head, t, device=qkv.device, dtype=torch.float32)
    bm1, bn1, bm2, bn2, warps, stages = _launch("bwd", t)
    # The bias gradient's partial sums: one row per sequence and block of either kernel (each
    # writes its own columns: q by the dq pass, k and v by the dk/dv pass), zeros where one kernel
    # has fewer blocks than the other. Summed in a fixed order: deterministic, unlike atomic adds.
    q_blocks, kv_blocks = triton.cdiv(t, bm2), triton.cdiv(t, bn1)
    parts = n_seq * max(q_blocks, kv_blocks)
    new = torch.empty if q_blocks == kv_blocks else torch.zeros
    part = new(qkv.shape[0], parts, 3 * d, device=qkv.device, dtype=torch.float32)
    alive = alive_mask(qkv.shape[0], qkv.device)
    launch(_attn_bwd_dq_kernel, (q_blocks, seqs * n_head))(
        alive, qkv, bias, o, do, lse, delta, dqkv, part, t, n_seq, parts, n_head, d, hd, scale * LOG2E, scale, bm2, bn2,
        bias_in_qkv, **_tiles(t, bm2, bn2), num_warps=warps, num_stages=stages,
        **register_cap(CONFIG["maxnreg"][1], qkv))
    launch(_attn_bwd_dkdv_kernel, (kv_blocks, seqs * n_head))(
        alive, qkv, bias, do, lse, delta, dqkv, part, t, n_seq, parts, n_head, d, hd, scale * LOG2E, scale, bm1, bn1,
        bias_in_qkv, **_tiles(t, bm1, bn1), num_warps=warps, num_stages=stages,
        **register_cap(CONFIG["maxnreg"][2], qkv))
    return dqkv, sum_parts(part)


@_attn_bwd.register_fake
def _(do: Tensor, qkv: Tensor, bias: Tensor, o: Tensor, lse: Tensor, n_seq: int, t: int,
      n_head: int, bias_in_qkv: bool) -> tuple[Tensor, Tensor]:
    return torch.empty_like(qkv), bias.new_empty(bias.shape, dtype=torch.float32)


def _setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    qkv, bias, n_seq, t, n_head, bias_in_qkv = inputs
    o, lse = output
    ctx.save_for_backward(qkv, bias, o, lse)
    ctx.dims = (n_seq, t, n_head, bias_in_qkv)
    ctx.bias_dtype = bias.dtype


def _backward(ctx, do: Tensor, _dlse: Tensor):  # type: ignore[no-untyped-def]
    qkv, bias, o, lse = ctx.saved_tensors
    if do is None:  # the output was not used
        return None, None, None, None, None, None
    dqkv, dbias = backward_op(ctx, _attn_bwd)(do, qkv, bias, o, lse, *ctx.dims)
    # The bias is added to every row of its model: its gradient is the row sum, accumulated in fp32
    # from the kernels' partial sums and returned in the bias's dtype, as autograd of
    # `qkv + bias[:, None]` gives.
    return dqkv, dbias.to(ctx.bias_dtype), None, None, None, None


register_autograd(_attn_fwd, _backward, _setup)


def causal_attention(qkv: Tensor, bias: Tensor, n_seq: int, t: int, n_head: int,
                     use_triton: bool | None = None, bias_in_qkv: bool = False) -> Tensor:
    """Causal multi-head self-attention of the projection `qkv` (K, B·T, 3d, without its bias)
    plus `bias` (K, 3d): output (K, B·T, d), heads concatenated. Triton kernels where `supported`
    (or when `use_triton` forces them, e.g. in the interpreter), else `attention_reference`.

    bias_in_qkv: qkv already holds the bias, added by its producer (`pyphase.linear.linear_bias`,
    rounded as the kernels round it), so the kernels load q, k, v without adding it; `bias` is then
    only the input whose gradient this op returns (the column sums of qkv's gradient, as without),
    and the producer must treat the bias as a constant (`bias.detach()`) so it is counted once."""
    if use_triton if use_triton is not None else supported(qkv, n_head):
        return call(_attn_fwd, qkv, bias.to(qkv.dtype), n_seq, t, n_head, bias_in_qkv)[0]
    if bias_in_qkv:
        # the gradient w.r.t. bias is the column sum of qkv's, as in the kernels' path
        qkv = _BiasGrad.apply(qkv, bias)
    return attention_reference(qkv, bias, n_seq, t, n_head, bias_in_qkv)


class _BiasGrad(torch.autograd.Function):
    """Identity on qkv that hands bias (K, 3d) the column sums of qkv's gradient: for a qkv whose
    producer added the bias as a constant (`causal_attention`'s bias_in_qkv on the stock path)."""

    @staticmethod
    def forward(ctx, qkv: Tensor, bias: Tensor) -> Tensor:  # type: ignore[no-untyped-def, override]
        ctx.bias_dtype = bias.dtype
        return qkv.view_as(qkv)

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[no-untyped-def, override]
        return g, g.sum(dim=1, dtype=torch.float32).to(ctx.bias_dtype)
