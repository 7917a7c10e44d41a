"""Device experiment: phase3a's two packs (B = 128 and 256, K = 5 each) side by side in one CUDA
graph holding S steps of each pack (each pack's steps one after the other on its own stream, the
streams joined once per replay instead of once per step), and with stream priorities. Rounds/s
(one step of every pack) against the current capture (S = 1, default priorities), and a bit-for-bit
check that S steps per replay leave the same weights and metrics as S replays of one step."""
import time
import torch
from pyphase.config import RunConfig
from pyphase.data import load_corpus
from pyphase.train import PackTrainer, precompile_together


def cfg(b, lr, seed, steps):
    return RunConfig(experiment="p", batch_size=b, lr=lr, gradient_clip=1.0, seed=seed, steps=steps,
                     eval_interval=10 ** 6, eval_windows=4)


def capture(trainers, s, prio=(0, 0)):
    snaps = [t._snapshot() for t in trainers]
    cap = torch.cuda.Stream(priority=prio[0])
    streams = [torch.cuda.Stream(priority=prio[1]) for _ in trainers[1:]]
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=cap):
        main = torch.cuda.current_stream()
        for st in streams:
            st.wait_stream(main)
        for st, t in zip(streams, trainers[1:]):
            with torch.cuda.stream(st):
                for _ in range(s):
                    t._step()
        for _ in range(s):
            trainers[0]._step()
        for st in streams:
            main.wait_stream(st)
    for t, snap in zip(trainers, snaps):
        t._restore(*snap)
    return g


def rate(g, s, rounds=400):
    reps = max(1, rounds // s)
    for _ in range(max(1, 20 // s)):
        g.replay()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        g.replay()
    torch.cuda.synchronize()
    return reps * s / (time.perf_counter() - t0)


def main():
    corpus = load_corpus(None)
    n = 20000
    packs = [(256, 5), (128, 5)]
    trainers = [PackTrainer([cfg(b, 10 ** (-3 + 0.25 * i), i, n) for i in range(k)], corpus, "cuda") for b, k in packs]
    precompile_together(trainers)
    for t in trainers:
        t.warm_up()
    snaps = [t._snapshot() for t in trainers]
    # bits: 10 replays of S = 1 against 2 replays of S = 5, from the same state
    g1 = capture(trainers, 1)
    for _ in range(10):
        g1.replay()
    torch.cuda.synchronize()
    ref = [(t.model.flat.clone(), {k: v.clone() for k, v in t.state.tensors().items()}) for t in trainers]
    for t, sn in zip(trainers, snaps):
        t._restore(*sn)
    g5 = capture(trainers, 5)
    for _ in range(2):
        g5.replay()
    torch.cuda.synchronize()
    same = all(torch.equal(t.model.flat, f) and all(torch.equal(v, st[k]) for k, v in t.state.tensors().items())
               for t, (f, st) in zip(trainers, ref))
    print("S = 5 per replay equal to 5 replays of S = 1, bit for bit (weights and all state):", same, flush=True)
    del g1, g5
    base = None
    print(f"memory allocated {torch.cuda.memory_allocated() / 2**30:.2f} GiB", flush=True)
    for s, prio, order in [(1, (0, 0), "256 main"), (2, (0, 0), "256 main"), (5, (0, 0), "256 main"), (10, (0, 0), "256 main"),
                           (1, (-1, 0), "256 main"), (1, (0, -1), "256 main"), (5, (-1, 0), "256 main"), (5, (0, -1), "256 main"),
                           (1, (0, 0), "128 main"), (5, (0, 0), "128 main"), (1, (0, 0), "256 main"), (5, (0, 0), "256 main")]:
        ts = trainers if order == "256 main" else trainers[::-1]
        for t, sn in zip(trainers, snaps):
            t._restore(*sn)
        torch.cuda.reset_peak_memory_stats()
        g = capture(ts, s, prio)
        r = rate(g, s)
        base = base or r
        print(f"S={s:2d} priorities (capture stream, side stream) {prio} {order}: {r:.2f} rounds/s (x{r / base:.3f}); "
              f"peak memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB", flush=True)
        del g
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
