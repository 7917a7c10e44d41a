"""A lone model's weight gradient (K = 1) three ways against model 0 of a batch of 2, 3, 5: plain bmm,
the batch of two through a zero batch stride (linear.weight_grad), and a real copy; with times."""
import torch

from pyphase.linear import weight_grad

print("torch", torch.__version__, torch.cuda.get_device_name())
for n in [8192, 65536]:
    for o in [128, 384]:
        g = torch.Generator(device="cuda").manual_seed(n + o)
        h = torch.randn(5, n, 128, device="cuda", generator=g).bfloat16()
        dy = torch.randn(5, n, o, device="cuda", generator=g).bfloat16()
        ref = [h[:k].transpose(1, 2).bmm(dy[:k])[:1] for k in (2, 3, 5)]
        ways = {"bmm K=1": lambda: h[:1].transpose(1, 2).bmm(dy[:1]),
                "weight_grad (stride 0)": lambda: weight_grad(h[:1], dy[:1]),
                "copy": lambda: torch.cat([h[:1], h[:1]]).transpose(1, 2).bmm(torch.cat([dy[:1], dy[:1]]))[:1]}
        for name, fn in ways.items():
            same = [bool(torch.equal(fn(), r)) for r in ref]
            for _ in range(3):
                fn()
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(); e0.record()
            for _ in range(50):
                fn()
            e1.record(); torch.cuda.synchronize()
            print(f"N={n:6d} out {o:3d} {name:24s} equal to model 0 at K = 2, 3, 5: {same}  {e0.elapsed_time(e1) / 50 * 1e3:7.1f} us")
