"""Energy, power and SM clock of an NVIDIA GPU over a timed window, read from NVML through ctypes.

Why: on the H100 a phase3a training run draws the board's 700 W limit and the driver lowers the SM
clock to stay under it (results/bench/gpu_clocks_power_h100_9e8dfe8.csv), so a step's time depends
on the energy it takes as well as on its latency. `Meter.window()` measures, around a timed loop:
joules (NVML's total-energy counter), mean watts, the SM clock sampled every 20 ms, and the share of
samples where the software power cap was an active clock-event reason.

Benches only (no pyphase dependency on NVML): where NVML or a CUDA device is missing, `Meter.open`
returns None and the benches print no energy columns.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

NVML_CLOCK_SM = 1
SW_POWER_CAP = 0x4  # nvmlClocksEventReasonSwPowerCap


class Meter:
    def __init__(self, lib: Any, handle: ctypes.c_void_p) -> None:
        self._lib, self._h = lib, handle
        self._reasons = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            lib.nvmlDeviceGetCurrentClocksThrottleReasons

    @classmethod
    def open(cls, device: Any) -> "Meter | None":
        """A meter for torch device `device` (CUDA), or None where NVML cannot be used. The NVML
        index is the CUDA index when CUDA_VISIBLE_DEVICES is unset, else its entry for it (numeric
        entries only)."""
        if getattr(device, "type", None) != "cuda":
            return None
        index = device.index or 0
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:
            entries = [v.strip() for v in visible.split(",")]
            if index >= len(entries) or not entries[index].isdigit():
                return None
            index = int(entries[index])
        try:
            lib = ctypes.CDLL("libnvidia-ml.so.1")
            handle = ctypes.c_void_p()
            if lib.nvmlInit_v2() != 0 or lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle)) != 0:
                return None
            meter = cls(lib, handle)
            meter.energy_mj(), meter.sm_mhz(), meter.reasons()  # each query the window makes answers here
            return meter
        except (OSError, AttributeError, RuntimeError):
            return None

    def _call(self, fn: Any, *args: Any) -> None:
        if fn(self._h, *args) != 0:
            raise RuntimeError(f"NVML {fn.__name__} failed")

    def energy_mj(self) -> int:
        """The board's energy since the driver loaded, in millijoules."""
        v = ctypes.c_ulonglong()
        self._call(self._lib.nvmlDeviceGetTotalEnergyConsumption, ctypes.byref(v))
        return v.value

    def sm_mhz(self) -> int:
        v = ctypes.c_uint()
        self._call(self._lib.nvmlDeviceGetClockInfo, ctypes.c_int(NVML_CLOCK_SM), ctypes.byref(v))
        return v.value

    def reasons(self) -> int:
        v = ctypes.c_ulonglong()
        self._call(self._reasons, ctypes.byref(v))
        return v.value

    @contextmanager
    def window(self, interval: float = 0.02) -> Iterator[dict[str, float]]:
        """Measure the `with` block (the caller synchronises the device at both ends); the yielded
        dict is filled on exit: joules, seconds, watts, sm_mhz (mean of the samples), power_capped
        (share of samples with the software power cap active)."""
        out: dict[str, float] = {}
        samples: list[tuple[int, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(interval):
                samples.append((self.sm_mhz(), self.reasons()))
        thread = threading.Thread(target=sample, daemon=True)
        e0, t0 = self.energy_mj(), time.perf_counter()
        thread.start()
        try:
            yield out
        finally:
            stop.set()
            thread.join()
            e1, t1 = self.energy_mj(), time.perf_counter()
            samples.append((self.sm_mhz(), self.reasons()))
            out.update(joules=(e1 - e0) / 1e3, seconds=t1 - t0, watts=(e1 - e0) / 1e3 / (t1 - t0),
                       sm_mhz=sum(s for s, _ in samples) / len(samples),
                       power_capped=sum(1 for _, r in samples if r & SW_POWER_CAP) / len(samples))
