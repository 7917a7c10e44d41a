"""pyphase: predict (simulator) and measure (CUDA sweeps) how the optimal learning rate scales with
batch size, LR_opt ∝ B^β, and where gradient clipping switches training into another regime."""

from pyphase.errors import PyphaseError

__version__ = "0.1.0"
__all__ = ["PyphaseError", "__version__"]
