"""Does cuBLAS's batched product give model 0 (or model i) the same bits whatever the batch count K?
The bmm calls of pyphase's CUDA step, bf16 as under autocast, N rows per model."""
import torch

torch.manual_seed(0)
KS, KMAX = [1, 2, 3, 4, 5, 6, 7, 12], 12
print("torch", torch.__version__, torch.cuda.get_device_name())
allsame = True
for n in [8192, 16384, 32768, 65536]:
    r = lambda *s: torch.randn(KMAX, *s, device="cuda", dtype=torch.bfloat16)
    y, dy, h, dq, dpre = r(n, 128), r(n, 128), r(n, 128), r(n, 384), r(n, 512)
    wp, wq, w1 = r(128, 128) * 0.05, r(128, 384) * 0.05, r(128, 512) * 0.05
    cases = {
        "fwd_proj y@w": lambda k: torch.bmm(y[:k], wp[:k]),
        "fwd_qkv h@w": lambda k: torch.bmm(h[:k], wq[:k]),
        "dx_proj dy@w^T": lambda k: torch.bmm(dy[:k], wp[:k].transpose(1, 2)),
        "dw_proj y^T@dy": lambda k: torch.bmm(y[:k].transpose(1, 2), dy[:k]),
        "dx_qkv dq@w^T": lambda k: dq[:k].bmm(wq[:k].transpose(1, 2)),
        "dw_qkv h^T@dq": lambda k: h[:k].transpose(1, 2).bmm(dq[:k]),
        "dx_mlp dpre@w1^T": lambda k: torch.bmm(dpre[:k], w1[:k].transpose(1, 2)),
    }
    for name, fn in cases.items():
        ref = fn(KMAX)
        bad = [k for k in KS if not torch.equal(fn(k), ref[:k])]
        allsame &= not bad
        print(f"N={n:6d} {name:18s} K whose models differ from the same models at K={KMAX}: {bad or 'none'}")
print("cuBLAS bits independent of K:", allsame)
