"""Kernels compiled in forked processes (pyphase.forked_compile) land in Triton's on-disk cache under
the key the parent's own compile looks up, so the parent only loads them; a job a child cannot
compile is reported, not fatal. These compile for sm_90 on any machine (Triton brings ptxas); the
end-to-end path through `kernels.compile_all` on a GPU is in tests/test_kernels.py."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from conftest import triton_cache_hits

triton = pytest.importorskip("triton")

pytestmark = pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")

P = "*bf16"
SIG = {"ALIVE": "*i1", "QKV": P, "BIAS": P, "O": P, "LSE": "*fp32", "T": "i32", "N_SEQ": "i32",
       "N_HEAD": "constexpr", "D": "constexpr", "HD": "constexpr", "qk_scale": "fp32", "BM": "constexpr",
       "BN": "constexpr", "BIAS_IN_QKV": "constexpr", "EVEN": "constexpr", "DIAG": "constexpr", "RN": "constexpr"}


def _jobs(hds: list[int]):  # type: ignore[no-untyped-def]
    from triton.backends.compiler import GPUTarget
    from triton.compiler.compiler import make_backend

    from pyphase import attention, kernels
    from pyphase.forked_compile import Job

    target = GPUTarget("cuda", 90, 32)
    options = make_backend(target).parse_options({"num_warps": 4, "num_stages": 3, **kernels.LAUNCH_OPTIONS})
    attrs = {(list(SIG).index(a),): [["tt.divisibility", 16]] for a in ("ALIVE", "QKV", "BIAS", "O", "LSE")}
    return [Job(attention._attn_fwd_kernel, SIG, {"N_HEAD": 4, "D": 4 * hd, "HD": hd, "BM": 64, "BN": 64,
                                                  "BIAS_IN_QKV": True, "EVEN": True, "DIAG": True, "RN": True},
                options, attrs, target) for hd in hds]


def test_children_fill_the_cache_the_parent_reads_and_report_failures(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase import forked_compile

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TRITON_ALWAYS_COMPILE", raising=False)
    jobs = _jobs([32, 33])  # a head width of 33 cannot compile (tl.arange needs a power of 2)
    pool = forked_compile.Pool(jobs, 2)
    try:
        done = list(pool.done())
    finally:
        pool.close()
    assert sorted(done) == [0, 1]
    assert set(pool.errors) == {1} and pool.times[0] > 0
    assert forked_compile._JOBS == []

    with triton_cache_hits() as hits:
        for j in jobs[:1] * 2 + _jobs([16]):  # the child's job twice, then one no child compiled
            forked_compile.compile_job(j)
    assert hits == [True, True, False]


def test_switch_off_keeps_the_thread_pool(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from pyphase import forked_compile

    monkeypatch.setenv("PYPHASE_COMPILE_PROCS", "0")
    assert not forked_compile.wanted()
    monkeypatch.setenv("PYPHASE_COMPILE_PROCS", "1")
    assert forked_compile.wanted()


def test_workers_share_the_cores_among_a_nodes_processes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    from pyphase import forked_compile

    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("PYPHASE_COMPILE_WORKERS", raising=False)
    # Three quarters of the cores (the parent loads kernels and builds launchers meanwhile).
    assert [forked_compile.workers(n) for n in (1, 8, 25)] == [1, 8, 12]
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert forked_compile.workers(25) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert forked_compile.workers(25) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert forked_compile.workers(25) == 1
    monkeypatch.setenv("PYPHASE_COMPILE_WORKERS", "6")
    assert [forked_compile.workers(n) for n in (4, 25)] == [4, 6]


def test_longest_compiles_start_first() -> None:
    from pyphase import forked_compile
    from pyphase.forked_compile import Job

    def kernel(name):  # type: ignore[no-untyped-def]
        return type("K", (), {"__name__": name})()

    names = ["_sum_parts_kernel", "_mlp_block_fwd_kernel", "_unknown_kernel", "_attn_fwd_kernel", "_sumsq_kernel",
             "_sum_parts_kernel"]
    jobs = [Job(kernel(n), None, None, None, None, None) for n in names]
    order = [names[i] for i in forked_compile.longest_first(jobs)]
    assert order == ["_mlp_block_fwd_kernel", "_attn_fwd_kernel", "_unknown_kernel", "_sum_parts_kernel",
                     "_sum_parts_kernel", "_sumsq_kernel"]
    assert forked_compile.longest_first(jobs)[3:5] == [0, 5]  # ties keep the plan's order


def test_launchers_are_built_once_per_distinct_source(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`build_launchers` builds each distinct launcher source once, in its own threads, as Triton's
    `CudaLauncher` would (its module name, the source `make_launcher` gives for the kernel's constants
    and signature); nothing where this Triton has no per-signature launcher or the switch is off."""
    import threading

    from triton.backends.nvidia import driver as nv

    from pyphase import forked_compile

    jobs = _jobs([32, 32, 16])  # the first two are the same kernel specialisation
    if not hasattr(nv, "make_launcher"):  # Triton >= 3.7: one launcher for every kernel, nothing to build
        assert forked_compile.build_launchers(jobs) is None
    built: list[tuple[str, str, str]] = []
    monkeypatch.setattr(nv, "make_launcher", lambda constants, signature, meta: repr((sorted(constants.items()),
                                                                                     signature, meta)), raising=False)
    monkeypatch.setattr(nv, "compile_module_from_src", lambda src, name, **kw: built.append(
        (src, name, threading.current_thread().name)), raising=False)
    monkeypatch.setattr(nv, "library_dirs", lambda: [], raising=False)
    launchers = forked_compile.build_launchers(jobs)
    assert launchers is not None
    launchers.wait()
    launchers.close()
    assert len(built) == 2 and {b[1] for b in built} == {"__triton_launcher"}
    assert all(b[2].startswith("pyphase-launcher") for b in built)
    hd = list(SIG).index("HD")
    assert {w for w in (16, 32) for b in built if f"(({hd},), {w})" in b[0]} == {16, 32}  # one each
    assert "None)" in built[0][0]  # no tensor descriptors
    monkeypatch.setenv("PYPHASE_PREBUILD_LAUNCHERS", "0")
    assert forked_compile.build_launchers(jobs) is None
