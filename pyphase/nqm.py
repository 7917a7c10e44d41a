"""Noisy quadratic model parameters: the dataclass, its calibration-file format and the built-in
defaults. This module is the single source of truth for what an NQM parameter set is; the
simulator (`pyphase.predict`, Rust `sim`) reads it and `pyphase calibrate` writes it.

The model (Zhang et al. 2019), in absolute units so gradient norms compare with a clip threshold:
L(θ) = loss_floor + ½ Σ h_i θ_i², h_i = h_max · i^(-alpha) for i = 1..d; a minibatch gradient at
batch size B is Hθ + ξ with ξ_i ~ N(0, sigma2 · h_i / B); θ_i(0) = r · (h_i/h_max)^(-init_power/2)
with r such that L(θ(0)) = init_loss. init_power = 0 is an isotropic start (the loss sits in the
sharp directions); 1 gives every direction the same share of the loss; larger values move it
into the flat directions. Given init_loss, init_power sets the initial gradient norm.

Calibration file (JSON, one object)::

    {"format": "pyphase.nqm", "version": 1,
     "d": 512, "h_max": ..., "alpha": ..., "sigma2": ..., "init_loss": ..., "loss_floor": ...,
     "init_power": 0.0,
     "provenance": {"source": "built-in" | "calibration" | ..., "description": "...", ...}}

`init_power` may be left out (0, isotropic). `provenance` is free-form but must contain "source";
outputs quote it so every prediction says which parameters it used.

Version 2 adds the optional radial (scale-invariance) part, three keys given together or not at all:
`si_fraction` (share of the directions, and so of |G|², that belongs to scale-invariant weights),
`si_params` (number of real scale-invariant parameters) and `si_init_norm` (their norm at
initialisation). For those directions θ is the direction of the weights, their norm grows with every
step and the gradient the clip sees shrinks as 1/norm (rust/sim/sweep.rs has the step). A file
without the three keys (every version 1 file) is the plain NQM and simulates exactly as before;
`to_dict` writes version 1 for it, so such files stay readable by version-1 readers.

Version 3 adds an optional measured growth law for the radial part, two keys given together and only
with the radial three: |w_si|² grows by `si_growth_coef · lr^si_growth_power` per step (before weight
decay), fitted by `pyphase calibrate --radial-base` on short AdamW runs of the real model at a few
learning rates. It replaces version 2's spherical-motion formula (growth from the simulated update),
which grew |w_si|² far slower than the model does. A radial set without the law is written as
version 2 and simulates exactly as before.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pyphase.config import is_finite
from pyphase.errors import PyphaseError, shown

FORMAT = "pyphase.nqm"
VERSION = 3
#: Versions `from_dict` reads; version 1 has no radial part, version 2 no growth law.
VERSIONS = (1, 2, 3)
FIELDS = ("d", "h_max", "alpha", "sigma2", "init_loss", "loss_floor", "init_power")
OPTIONAL = {"init_power": 0.0}
#: The radial (scale-invariance) part: all three or none (version 2 only).
RADIAL_FIELDS = ("si_fraction", "si_params", "si_init_norm")
#: The radial part's measured growth law: both or neither, only with RADIAL_FIELDS (version 3 only).
GROWTH_FIELDS = ("si_growth_coef", "si_growth_power")
#: Largest growth-law exponent accepted (the Rust simulator's limit).
MAX_GROWTH_POWER = 4.0
#: Most directions accepted (the Rust simulator's limit, rust/sim/model.rs MAX_D). Checked here, in
#: Python, because a larger integer never reached the simulator's own check: past 2^63 its conversion
#: to the simulator's 64-bit integer failed first (an OverflowError traceback).
MAX_D = 1 << 20

# Where `pyphase calibrate` ships a calibration measured on the real model; `NQMParams.default()`
# prefers it over the hand-chosen values below.
DEFAULT_CALIBRATION = Path(__file__).parent / "calibrations" / "default.json"

# Hand-chosen defaults, used until a calibration measured on the real model replaces them.
# Origin (no measurement behind them): chosen by hand, by running this simulator, so that AdamW
# with clip 1.0 on the default grid (B 32..256, LR 1e-4..0.1, 5,000 steps) logs gradient norms of
# the order seed 000 logged: ‖g‖ ≈ 0.3-0.9 at low LR (clipping on ~35% of steps at B = 32, on
# almost none at B = 256), ≈ 1-2 at LR 0.01 and 3-9 at LR 0.03-0.1 with clipping on 90-100% of
# steps (seed 000, B = 128/256, LR 0.01-0.1: ‖g‖ 1.5-7.2, clipping on every step). The loss is
# still falling at LR 1e-3 after 5,000 steps, so LR_opt lies inside the grid.
#   - per-example noise trace tr(Σ) = sigma2 · tr(H) ≈ 32: noise norm sqrt(tr(Σ)/B) ≈ 1.0 at
#     B = 32 and 0.35 at B = 256;
#   - h_max = 1000, alpha = 2.7: a few sharp directions, in which AdamW's steady oscillation makes
#     ‖Hθ‖ grow with the LR, and a long flat tail;
#   - init_power = 1.5: the initial loss sits mostly in the flat directions (‖∇L(θ0)‖ ≈ 0.13, so
#     B_simple at θ0 ≈ 1900: gradient noise dominates at every B of the grid);
#   - d = 512 directions: d is part of the model (with init_power > 1 the flat tail holds most of
#     the loss, so d changes the dynamics); a sweep's cost is linear in d;
#   - init_loss = ln 65 = 4.174 nats (uniform prediction over Tiny Shakespeare's 65 characters);
#   - loss_floor = 1.5 nats: a placeholder. It shifts every loss equally and moves neither LR_opt,
#     β nor clip frequencies.
BUILTIN = {
    "d": 512,
    "h_max": 1000.0,
    "alpha": 2.7,
    "sigma2": 0.025,
    "init_loss": round(math.log(65), 4),
    "loss_floor": 1.5,
    "init_power": 1.5,
}
BUILTIN_PROVENANCE = {
    "source": "built-in",
    "description": (
        "hand-chosen to give gradient norms of the order seed 000 logged (AdamW, clip 1.0); "
        "not measured on any model. Replace with `pyphase calibrate`."
    ),
}


def _finite_number(v: Any) -> bool:
    """A finite real number (never a bool); an integer too large for a float is not finite."""
    return not isinstance(v, bool) and isinstance(v, (int, float)) and is_finite(v)


@dataclass(frozen=True)
class NQMParams:
    """One NQM parameter set and where it came from (see the module docstring for the model)."""

    d: int
    h_max: float
    alpha: float
    sigma2: float
    init_loss: float
    loss_floor: float
    init_power: float = 0.0
    si_fraction: float | None = None
    si_params: float | None = None
    si_init_norm: float | None = None
    si_growth_coef: float | None = None
    si_growth_power: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.d, bool) or not isinstance(self.d, int) or self.d < 1:
            raise PyphaseError(f"NQM d must be a positive integer, got {shown(self.d, quote=True)}")
        if self.d > MAX_D:
            raise PyphaseError(f"NQM d must be in 1..={MAX_D}, got {shown(self.d, quote=True)} (the simulator's limit)")
        for name in FIELDS[1:]:
            v = getattr(self, name)
            if not _finite_number(v):
                raise PyphaseError(f"NQM {name} must be a finite number, got {shown(v, quote=True)}")
        if self.h_max <= 0:
            raise PyphaseError(f"NQM h_max must be > 0, got {self.h_max}")
        if self.alpha < 0:
            raise PyphaseError(f"NQM alpha must be >= 0, got {self.alpha}")
        if self.sigma2 < 0:
            raise PyphaseError(f"NQM sigma2 must be >= 0, got {self.sigma2}")
        if not 0.0 <= self.init_power <= 2.0:
            raise PyphaseError(f"NQM init_power must be in [0, 2], got {self.init_power}")
        if self.init_loss <= self.loss_floor:
            raise PyphaseError(f"NQM init_loss ({self.init_loss}) must exceed loss_floor ({self.loss_floor})")
        given = [k for k in RADIAL_FIELDS if getattr(self, k) is not None]
        if given and len(given) != len(RADIAL_FIELDS):
            raise PyphaseError(f"NQM {', '.join(RADIAL_FIELDS)} must be given together, got only {', '.join(given)}")
        law = [k for k in GROWTH_FIELDS if getattr(self, k) is not None]
        if law and len(law) != len(GROWTH_FIELDS):
            raise PyphaseError(f"NQM {', '.join(GROWTH_FIELDS)} must be given together, got only {', '.join(law)}")
        if law and not given:
            raise PyphaseError(f"NQM {', '.join(GROWTH_FIELDS)} need the radial part ({', '.join(RADIAL_FIELDS)})")
        for name in given + law:
            v = getattr(self, name)
            if not _finite_number(v):
                raise PyphaseError(f"NQM {name} must be a finite number, got {shown(v, quote=True)}")
        if given:
            if not 0.0 <= self.si_fraction <= 1.0:  # type: ignore[operator]
                raise PyphaseError(f"NQM si_fraction must be in [0, 1], got {self.si_fraction}")
            if self.si_params < 1:  # type: ignore[operator]
                raise PyphaseError(f"NQM si_params must be >= 1, got {self.si_params}")
            if self.si_init_norm <= 0:  # type: ignore[operator]
                raise PyphaseError(f"NQM si_init_norm must be > 0, got {self.si_init_norm}")
        if law:
            if self.si_growth_coef < 0:  # type: ignore[operator]
                raise PyphaseError(f"NQM si_growth_coef must be >= 0, got {self.si_growth_coef}")
            if not 0.0 <= self.si_growth_power <= MAX_GROWTH_POWER:  # type: ignore[operator]
                raise PyphaseError(f"NQM si_growth_power must be in [0, {MAX_GROWTH_POWER:g}], got {self.si_growth_power}")

    # ------------------------------------------------------------------ construction
    @classmethod
    def builtin(cls) -> NQMParams:
        """The hand-chosen defaults (see BUILTIN's comment for their origin)."""
        return cls(**BUILTIN, provenance=dict(BUILTIN_PROVENANCE))

    @classmethod
    def default(cls) -> NQMParams:
        """The shipped calibration `pyphase/calibrations/default.json` if present, else `builtin()`."""
        if DEFAULT_CALIBRATION.is_file():
            return cls.load(DEFAULT_CALIBRATION)
        return cls.builtin()

    @classmethod
    def from_dict(cls, obj: Any, where: str = "NQM parameters") -> NQMParams:
        """Parse the calibration-file object; errors name `where` and the bad key."""
        if not isinstance(obj, dict):
            raise PyphaseError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if obj.get("format", FORMAT) != FORMAT:
            raise PyphaseError(f"{where}: format is {obj.get('format')!r}, expected {FORMAT!r}")
        version = obj.get("version", VERSION)
        if version not in VERSIONS or isinstance(version, bool):
            raise PyphaseError(f"{where}: version {version!r} is not supported (expected one of {VERSIONS})")
        if version == 1 and any(k in obj for k in RADIAL_FIELDS):
            raise PyphaseError(f"{where}: {', '.join(RADIAL_FIELDS)} need version 2, the file says version 1")
        if version in (1, 2) and any(k in obj for k in GROWTH_FIELDS):
            raise PyphaseError(f"{where}: {', '.join(GROWTH_FIELDS)} need version 3, the file says version {version}")
        missing = [k for k in FIELDS if k not in obj and k not in OPTIONAL]
        if missing:
            raise PyphaseError(f"{where}: missing {', '.join(missing)}")
        prov = obj.get("provenance", {})
        if not isinstance(prov, dict) or "source" not in prov:
            raise PyphaseError(f"{where}: 'provenance' must be an object with a 'source' entry")
        d = obj["d"]
        if isinstance(d, float) and d.is_integer():
            d = int(d)
        unknown = sorted(set(obj) - set(FIELDS) - set(RADIAL_FIELDS) - set(GROWTH_FIELDS)
                         - {"format", "version", "provenance"})
        if unknown:
            raise PyphaseError(f"{where}: unknown key(s) {', '.join(unknown)}")
        values = {k: obj.get(k, OPTIONAL.get(k)) for k in FIELDS[1:]}
        radial = {k: obj[k] for k in RADIAL_FIELDS + GROWTH_FIELDS if k in obj}
        return cls(d=d, **values, **radial, provenance=prov)

    @classmethod
    def load(cls, path: str | Path) -> NQMParams:
        """Read a calibration file; a missing or malformed file is a PyphaseError naming it."""
        p = Path(path)
        if not p.is_file():
            raise PyphaseError(f"calibration file not found: {p}")
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise PyphaseError(f"calibration file {p} is not valid JSON: {e}") from None
        try:
            params = cls.from_dict(obj, where=str(p))
        except PyphaseError as e:  # the dataclass's checks know no file: name it
            msg = str(e)
            if not msg.startswith("NQM "):
                raise
            raise PyphaseError(f"calibration file {p}: {msg.removeprefix('NQM ')}") from None
        try:  # the simulator's own limits (a spectrum that underflows, ...) and a usable θ(0), before any simulation
            params.check()
        except ValueError as e:
            raise PyphaseError(f"calibration file {p}: {e}") from None
        return params.with_provenance(path=str(p))

    # ------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        """The calibration-file object (round-trips through `from_dict`)."""
        d = asdict(self)
        prov = d.pop("provenance")
        if not self.growth_law:
            for k in GROWTH_FIELDS:
                d.pop(k)
        if not self.radial:
            for k in RADIAL_FIELDS:
                d.pop(k)
        # The lowest version that holds the set, so older files round-trip unchanged.
        version = VERSION if self.growth_law else 2 if self.radial else 1
        return {"format": FORMAT, "version": version, **d, "provenance": prov}

    def save(self, path: str | Path) -> None:
        """Write the calibration file (parent folders created) atomically (`sweep.atomic_write`), so
        that an interrupted write leaves the previous file or this one."""
        from pyphase.sweep import atomic_write

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        atomic_write(p, lambda f: f.write(text.encode("utf-8")))

    def with_provenance(self, **extra: Any) -> NQMParams:
        """A copy whose provenance has `extra` added (existing keys kept unless overridden)."""
        return NQMParams(**{k: getattr(self, k) for k in FIELDS + RADIAL_FIELDS + GROWTH_FIELDS},
                         provenance={**self.provenance, **extra})

    @property
    def radial(self) -> bool:
        """True when the radial (scale-invariance) part is on."""
        return self.si_fraction is not None

    @property
    def growth_law(self) -> bool:
        """True when the radial part grows |w_si|² by the measured law (version 3)."""
        return self.si_growth_coef is not None

    @property
    def source(self) -> str:
        """Short label of where the parameters came from ("built-in", "calibration", ...)."""
        return str(self.provenance.get("source", "unknown"))

    def core_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the `_core` simulator functions (the radial ones only when set, so a
        plain parameter set calls the simulator exactly as version 1 did)."""
        keys = FIELDS + (RADIAL_FIELDS if self.radial else ()) + (GROWTH_FIELDS if self.growth_law else ())
        return {k: getattr(self, k) for k in keys}

    def check(self) -> dict[str, float]:
        """`describe`, raising ValueError (the simulator's own kind of error) where its closed forms
        show a set no simulation can say anything about: the simulator's limits (a spectrum that
        underflows, ...), or a start θ(0) whose gradient norm is 0 or not finite, or whose tr(Σ) or
        B_simple is not finite. All parameters finite is not enough: with h_max = 1e308 the spectrum's
        sums overflow float64, θ(0) comes out all zeros (the start is the minimum: nothing to train)
        and B_simple infinite, and every number a prediction gives would be an artefact of that."""
        desc = self.describe()
        g, tr, b = desc["init_grad_norm"], desc["trace_sigma"], desc["b_simple"]
        if not (math.isfinite(g) and g > 0 and math.isfinite(tr) and math.isfinite(b)):
            raise ValueError(f"the start θ(0) is degenerate: |G(θ0)| = {g:.3g}, tr(Σ) = {tr:.3g}, "
                             f"B_simple = {b:.3g} (h_max = {self.h_max:g}, alpha = {self.alpha:g}, "
                             f"sigma2 = {self.sigma2:g}, d = {self.d}: a sum over the spectrum leaves float64's "
                             "range); no simulation of it means anything")
        return desc

    def describe(self) -> dict[str, float]:
        """Closed forms at θ(0) (from the Rust model, the one implementation of them): the full-batch
        gradient norm ‖Hθ(0)‖, the per-example noise trace tr(Σ) and McCandlish et al.'s simple noise
        scale B_simple = tr(Σ)/‖G‖²."""
        from pyphase import _core

        out = _core.nqm_describe(**self.core_kwargs())
        return {k: float(out[k]) for k in ("init_grad_norm", "trace_sigma", "b_simple")}
