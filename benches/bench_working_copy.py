"""The training step with the weights' working copy (`pyphase.packing`, the default) against the
weights rounded where they are used (PYPHASE_WORKING_COPY=0, pyphase before session 17).

phase3a's packs, built and timed both ways by `bench_switch.py` (its docstring says how); the bits
must be equal both ways. CUDA only. Usage:
    python benches/bench_working_copy.py --data PATH --k 5 --batches 128,256 --steps 100 --rounds 3
"""
from __future__ import annotations

from bench_switch import main  # noqa: E402  (benches/ is the script's own folder)

if __name__ == "__main__":
    main(doc=__doc__, env="PYPHASE_WORKING_COPY=0", names=("working copy", "cast where used"),
         check=lambda t, switched: (t.working is None) == switched)
