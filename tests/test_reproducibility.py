"""Kernel pinning and CPU imitation (u2cdr_bench.reproducibility, issue 17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from u2cdr_bench import reproducibility as rp

AVX512 = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vbmi2", "avx512_fp16"})
AVX2_ONLY = frozenset({"sse4_2", "avx", "avx2", "fma"})
AVX_ONLY = frozenset({"sse4_2", "avx"})


@pytest.fixture
def flags(monkeypatch):
    def use(f: frozenset[str]) -> None:
        monkeypatch.setattr(rp, "cpu_flags", lambda: f)

    return use


def test_presets_and_switch_lists_parse():
    assert rp.requested_switches("pinned") == ("pinned", rp.PINS)
    assert rp.requested_switches("native") == ("native", ())
    assert rp.requested_switches("mkl-cbwr, onednn-off") == ("custom", ("mkl-cbwr", "onednn-off"))
    assert rp.requested_switches("pinned,deterministic") == ("custom", (*rp.PINS, "deterministic"))
    with pytest.raises(rp.ReproError, match="unknown switch.*nosuch.*valid choices: pinned, native"):
        rp.requested_switches("mkl-cbwr,nosuch")


def test_pinned_on_an_avx512_machine_sets_every_library_to_avx2(flags):
    flags(AVX512)
    env: dict[str, str] = {}
    res = rp.apply_environment(env)
    assert res["switches"] == list(rp.PINS)
    assert env == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "FAISS_SIMD_LEVEL": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    }


def test_pins_above_the_machine_are_skipped_and_user_settings_win(flags):
    flags(AVX2_ONLY)
    env = {"MKL_CBWR": "AUTO"}
    res = rp.apply_environment(env)
    assert env["MKL_CBWR"] == "AUTO"  # the user's value
    assert "NPY_DISABLE_CPU_FEATURES" not in env  # nothing above AVX2 to disable
    assert env["OPENBLAS_CORETYPE"] == "Haswell"
    assert "MKL_CBWR" not in res["set"]
    flags(AVX_ONLY)  # no AVX2: a Haswell OpenBLAS kernel would crash, so no AVX2 pin is applied
    env = {}
    res = rp.apply_environment(env)
    assert res["switches"] == ["mkl-cbwr", "onednn-off"]
    assert env == {"MKL_CBWR": "COMPATIBLE"}


def test_native_sets_nothing_and_imitation_overrides_pins(flags):
    flags(AVX512)
    env = {rp.REPRO_ENV: "native"}
    assert rp.apply_environment(env)["set"] == {}
    env = {rp.IMITATE_ENV: "avx"}
    res = rp.apply_environment(env)
    # an AVX-only machine gets no AVX2 pin and MKL's COMPATIBLE branch
    assert res["switches"] == ["mkl-cbwr", "onednn-off"] and env["MKL_CBWR"] == "COMPATIBLE"
    assert env["ATEN_CPU_CAPABILITY"] == "default" and env["OPENBLAS_CORETYPE"] == "Sandybridge"
    assert env["MKL_ENABLE_INSTRUCTIONS"] == "AVX" and env["FAISS_SIMD_LEVEL"] == "NONE"
    assert env["NPY_DISABLE_CPU_FEATURES"].split() == ["X86_V4", "AVX512_ICL", "AVX512_SPR", "X86_V3"]
    with pytest.raises(rp.ReproError, match="not an imitation; valid choices: avx2, avx"):
        rp.apply_environment({rp.IMITATE_ENV: "sse"})


def test_describe_and_same_kernels():
    info = rp.machine_info()
    assert info["cpu"]["machine"] and "kernels" in info and "switches" in info
    line = rp.describe(info)
    assert str(info["kernels"]["torch"]["cpu_capability"]) in line
    assert rp.same_kernels(info, json.loads(json.dumps(info)))
    other = json.loads(json.dumps(info))
    # a level this run does not have (under U2CDR_IMITATE_CPU=avx this run's own level is DEFAULT)
    here = str(info["kernels"]["torch"]["cpu_capability"])
    other["kernels"]["torch"]["cpu_capability"] = "AVX512" if here != "AVX512" else "DEFAULT"
    assert not rp.same_kernels(info, other)
    assert rp.describe(None).startswith("unknown machine")


def _kernels_in_subprocess(extra_env: dict[str, str]) -> dict:
    code = (
        "import json, u2cdr_bench, torch, faiss\n"
        "from u2cdr_bench.reproducibility import machine_info\n"
        "print(json.dumps(machine_info()['kernels']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in rp.KNOWN_VARS and not k.startswith("U2CDR_")}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif("avx2" not in rp.cpu_flags(), reason="needs an AVX2 CPU")
def test_imitation_really_changes_the_kernels_the_libraries_run():
    pinned = _kernels_in_subprocess({})
    avx = _kernels_in_subprocess({rp.IMITATE_ENV: "avx"})
    assert pinned["torch"]["cpu_capability"] == "AVX2"
    assert pinned["faiss_simd"] == "AVX2"
    assert {b["kernel"] for b in pinned["openblas"]} == {"Haswell"}
    assert avx["torch"]["cpu_capability"] == "DEFAULT"
    assert avx["faiss_simd"] == "NONE"
    assert {b["kernel"] for b in avx["openblas"]} == {"Sandybridge"}
    assert "X86_V3" not in avx["numpy"]["dispatch"]


def test_float64_kmeans_matches_faiss_on_separated_clusters(monkeypatch):
    from u2cdr_bench.blocks.kmeans import kmeans

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 10
    x = (centres[rng.integers(4, size=400)] + rng.normal(size=(400, 8))).astype(np.float32)
    ref = kmeans(x, 4, seed=3, niter=20, nredo=2)
    monkeypatch.setattr(rp, "float64_clustering", lambda: True)
    got = kmeans(x, 4, seed=3, niter=20, nredo=2)
    # same partition (up to label names) and the same inertia to float32 precision
    pairs = set(zip(ref.assign.tolist(), got.assign.tolist(), strict=True))
    assert len(pairs) == 4
    assert got.inertia == pytest.approx(ref.inertia, rel=1e-5)
    # float64 inertia is exactly the float64 sum of squared distances to the returned centres
    d = ((x.astype(np.float64) - got.centroids.astype(np.float64)[got.assign]) ** 2).sum()
    assert got.inertia == pytest.approx(d, rel=1e-6)
