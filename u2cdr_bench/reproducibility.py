"""Numbers that do not depend on the CPU: kernel pinning, CPU imitation, the facts that decide bit-equality.

The same program on the same inputs gives different floating-point results on two x86 machines because the
numerical libraries pick their kernels by instruction set (and, for some, by cache size): torch's ATen
(``ATEN_CPU_CAPABILITY``), MKL (torch's BLAS), oneDNN (torch's convolutions), OpenBLAS (numpy/scipy, and a
copy inside faiss), faiss's own SIMD code and numpy's dispatched loops. One changed rounding flips the first
discrete decision of a run (an Elbow K, a k-means assignment) and the run goes its own way (issue 17;
``docs/reliability.md`` has the measurements).

**Pinning** (``$U2CDR_REPRO``, default ``pinned``): before the libraries load, each one is told to use its
AVX2-level code path, the level every x86 CPU of the last decade has (AMD Zen and Intel Haswell onwards):

====================  =========================================  ============================================
switch                what it sets                               effect
====================  =========================================  ============================================
``aten-avx2``         ``ATEN_CPU_CAPABILITY=avx2``               torch's vectorised kernels (Sleef exp, ...)
``mkl-cbwr``          ``MKL_CBWR=AVX2`` (``COMPATIBLE`` on a     MKL's conditional numerical reproducibility
                      CPU without AVX2)                          branch: one code path, fixed cache sizes,
                                                                 deterministic reductions
``onednn-off``        ``torch.backends.mkldnn.enabled=False``    convolutions through ATen + MKL instead of
                                                                 oneDNN's JIT kernels (blocking by cache)
``openblas-haswell``  ``OPENBLAS_CORETYPE=Haswell``              numpy/scipy's and faiss's OpenBLAS
``faiss-avx2``        ``FAISS_SIMD_LEVEL=AVX2``                  faiss's dynamically dispatched kernels
``numpy-avx2``        ``NPY_DISABLE_CPU_FEATURES=X86_V4 ...``    numpy's loops at the X86_V3 (AVX2) level
====================  =========================================  ============================================

``U2CDR_REPRO=native`` applies none (each library picks the fastest kernels of the machine), or a comma list
of switch names picks some. A switch is applied only where the CPU supports its level (a pin above the
machine's ISA would crash OpenBLAS or faiss), and never over a variable the user has set. Runtime switches
(``onednn-off``) are applied by :func:`apply_runtime` in the runner.

**Imitation** (``$U2CDR_IMITATE_CPU``, for tests and CI only): ``avx2`` caps every library at AVX2 the way an
AMD EPYC without AVX-512 would (the machine of issue 17), ``avx`` at AVX/SSE4.2 (Sandy Bridge). An
imitation overrides the pins (it stands for the hardware).

:func:`machine_info` returns what decides bit-equality, for every record's ``env`` block: CPU model and
instruction-set flags, each library's BLAS and the kernel level it runs, and the switches in force.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from functools import lru_cache
from typing import Any

__all__ = [
    "IMITATE_ENV",
    "IMITATIONS",
    "REPRO_ENV",
    "SWITCHES",
    "apply_environment",
    "apply_runtime",
    "cpu_flags",
    "machine_info",
    "requested_switches",
]

REPRO_ENV = "U2CDR_REPRO"
IMITATE_ENV = "U2CDR_IMITATE_CPU"

#: Switch name -> (environment variables it sets, CPU flags it needs). ``onednn-off`` sets no variable.
SWITCHES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "aten-avx2": ({"ATEN_CPU_CAPABILITY": "avx2"}, ("avx2", "fma")),
    "mkl-cbwr": ({"MKL_CBWR": "AVX2"}, ()),  # COMPATIBLE where the CPU lacks AVX2 (apply_environment)
    "onednn-off": ({}, ()),
    "openblas-haswell": ({"OPENBLAS_CORETYPE": "Haswell"}, ("avx2", "fma")),
    "faiss-avx2": ({"FAISS_SIMD_LEVEL": "AVX2"}, ("avx2", "fma")),
    "numpy-avx2": ({}, ("avx2", "fma")),  # NPY_DISABLE_CPU_FEATURES, built from the machine's flags
    "deterministic": ({}, ()),  # torch.use_deterministic_algorithms(True)
    "float64-clustering": ({}, ()),  # k-means assignments and inertia in float64 (blocks/kmeans.py)
}
#: The pins of the ``pinned`` preset (measured in docs/reliability.md; the other two cost time and bought
#: nothing there).
PINS = ("aten-avx2", "mkl-cbwr", "onednn-off", "openblas-haswell", "faiss-avx2", "numpy-avx2")
PRESETS: dict[str, tuple[str, ...]] = {"pinned": PINS, "native": ()}
DEFAULT_PRESET = "pinned"

#: numpy dispatch targets above X86_V3 and the CPU flag that tells whether the machine has each.
_NUMPY_ABOVE_AVX2 = (("X86_V4", "avx512f"), ("AVX512_ICL", "avx512_vbmi2"), ("AVX512_SPR", "avx512_fp16"))
_NUMPY_AVX2 = ("X86_V3",)

#: CPU imitations: the variables that make each library run the code path of a lesser CPU.
IMITATIONS: dict[str, dict[str, str]] = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "OPENBLAS_CORETYPE": "Haswell",
        "FAISS_SIMD_LEVEL": "AVX2",
    },
    "avx": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "AVX",
        "ONEDNN_MAX_CPU_ISA": "AVX",
        "OPENBLAS_CORETYPE": "Sandybridge",
        "FAISS_SIMD_LEVEL": "NONE",
    },
}
_IMITATION_NUMPY_OFF = {"avx2": (), "avx": _NUMPY_AVX2}
#: CPU flags a machine of each imitated kind lacks (so the pins are those such a machine would get).
_AVX512_FLAGS = (
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_vbmi2",
    "avx512_fp16",
)
_IMITATION_DROPS = {
    "avx2": frozenset(_AVX512_FLAGS + ("amx_tile",)),
    "avx": frozenset(_AVX512_FLAGS + ("amx_tile", "avx2", "fma")),
}

#: Every variable this module may set (recorded in ``machine_info()["switches"]["env"]``).
KNOWN_VARS = (
    "ATEN_CPU_CAPABILITY",
    "MKL_CBWR",
    "MKL_ENABLE_INSTRUCTIONS",
    "ONEDNN_MAX_CPU_ISA",
    "OPENBLAS_CORETYPE",
    "FAISS_SIMD_LEVEL",
    "NPY_DISABLE_CPU_FEATURES",
)

_applied: dict[str, Any] = {
    "switches": [],
    "imitation": None,
    "set": {},
    "late": [],
    "preset": None,
    "error": None,
}


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of the CPU (``/proc/cpuinfo``); empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


class ReproError(ValueError):
    """A bad ``$U2CDR_REPRO`` / ``$U2CDR_IMITATE_CPU`` value (the CLI turns it into one sentence)."""


def requested_switches(value: str | None = None) -> tuple[str, tuple[str, ...]]:
    """``(preset or "custom", switch names)`` asked for by ``$U2CDR_REPRO`` (or ``value``)."""
    text = (os.environ.get(REPRO_ENV, DEFAULT_PRESET) if value is None else value).strip() or DEFAULT_PRESET
    if text in PRESETS:
        return text, PRESETS[text]
    names: tuple[str, ...] = ()
    for item in (s.strip() for s in text.split(",") if s.strip()):
        names += PRESETS.get(item, (item,))
    names = tuple(dict.fromkeys(names))
    bad = [n for n in names if n not in SWITCHES]
    if bad:
        valid = ", ".join(list(PRESETS) + list(SWITCHES))
        raise ReproError(f"{REPRO_ENV} names unknown switch(es) {', '.join(bad)}; valid choices: {valid}.")
    return "custom", names


def _numpy_disable(features: list[str]) -> None:
    if features:
        current = os.environ.get("NPY_DISABLE_CPU_FEATURES", "").split()
        os.environ["NPY_DISABLE_CPU_FEATURES"] = " ".join(dict.fromkeys(current + features))


def apply_environment(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Set the variables of the requested switches and imitation; call before torch/numpy/faiss load.

    Variables the user set are left alone. Returns what was applied (also kept for :func:`machine_info`).
    ``environ`` (default ``os.environ``) is where the user's settings are read from; tests pass a copy.
    """
    env = os.environ if environ is None else environ
    user_set = {k for k in KNOWN_VARS if k in env}
    preset, names = requested_switches(env.get(REPRO_ENV))
    imitation = env.get(IMITATE_ENV) or None
    if imitation is not None and imitation not in IMITATIONS:
        raise ReproError(
            f"{IMITATE_ENV}={imitation!r} is not an imitation; valid choices: {', '.join(IMITATIONS)}."
        )
    flags = cpu_flags()
    if imitation is not None:  # the pins a machine of the imitated kind would get
        flags = frozenset(f for f in flags if f not in _IMITATION_DROPS[imitation])
    late = [m for m in ("torch", "numpy", "faiss") if m in sys.modules]
    wanted: dict[str, str] = {}
    applied: list[str] = []
    numpy_off: list[str] = []
    for name in names:
        variables, needs = SWITCHES[name]
        if not all(f in flags for f in needs):
            continue
        applied.append(name)
        wanted.update(variables)
        if name == "mkl-cbwr" and "avx2" not in flags:
            wanted["MKL_CBWR"] = "COMPATIBLE"
        if name == "numpy-avx2":
            numpy_off += [feat for feat, flag in _NUMPY_ABOVE_AVX2 if flag in flags]
    if imitation is not None:
        real = cpu_flags()
        wanted.update(IMITATIONS[imitation])
        numpy_off += [feat for feat, flag in _NUMPY_ABOVE_AVX2 if flag in real]
        numpy_off += list(_IMITATION_NUMPY_OFF[imitation]) if "avx2" in real else []
    set_now = {}
    for key, value in wanted.items():
        if key in user_set:
            continue
        env[key] = value
        set_now[key] = value
    if numpy_off and "NPY_DISABLE_CPU_FEATURES" not in user_set:
        if environ is None:
            _numpy_disable(numpy_off)
        else:
            env["NPY_DISABLE_CPU_FEATURES"] = " ".join(dict.fromkeys(numpy_off))
        set_now["NPY_DISABLE_CPU_FEATURES"] = env["NPY_DISABLE_CPU_FEATURES"]
    result = {"preset": preset, "switches": applied, "imitation": imitation, "set": set_now, "late": late}
    if environ is None:
        _applied.update(result)
    return result


def apply_runtime() -> None:
    """Runtime switches (``onednn-off``); called by the runner before a run.

    Raises :class:`ReproError` when the environment named a bad switch or imitation at import time.
    """
    if _applied["error"]:
        raise ReproError(_applied["error"])
    if "onednn-off" in _applied["switches"]:
        import torch

        torch.backends.mkldnn.enabled = False
    if "deterministic" in _applied["switches"]:
        import torch

        torch.use_deterministic_algorithms(True)


def float64_clustering() -> bool:
    """Whether the ``float64-clustering`` switch is on (read by :func:`u2cdr_bench.blocks.kmeans.kmeans`)."""
    return "float64-clustering" in _applied["switches"]


def _torch_blas() -> dict[str, Any]:
    import torch

    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", config)
    dnnl = re.search(r"MKL-DNN v([\w.]+)", config)
    return {
        "version": torch.__version__,
        "blas": re.search(r"BLAS_INFO=(\w+)", config).group(1) if "BLAS_INFO=" in config else None,
        "mkl": mkl.group(1) if mkl else None,
        "onednn": dnnl.group(1) if dnnl else None,
        "onednn_enabled": bool(torch.backends.mkldnn.enabled),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "deterministic": bool(torch.are_deterministic_algorithms_enabled()),
        "threads": torch.get_num_threads(),
    }


def _openblas_libs() -> list[dict[str, Any]]:
    import faiss  # noqa: F401 - load faiss's own OpenBLAS so that it is listed

    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - a dependency of scikit-learn
        return []
    out = []
    for lib in threadpool_info():
        if lib.get("internal_api") in ("openblas", "mkl", "blis"):
            path = str(lib.get("filepath", ""))
            owner = "faiss" if "faiss" in path else "numpy" if "numpy" in path or "scipy" in path else "other"
            out.append(
                {
                    "owner": owner,
                    "api": lib.get("internal_api"),
                    "version": lib.get("version"),
                    "kernel": lib.get("architecture"),
                }
            )
    return sorted(out, key=lambda d: (d["owner"], str(d["version"])))


def _faiss_simd() -> str | None:
    try:
        import faiss

        return str(faiss.to_string(faiss.SIMDConfig().level))
    except Exception:  # older faiss without SIMDConfig: record nothing
        return None


def _numpy_dispatch() -> list[str]:
    try:
        from numpy._core import _multiarray_umath as mu
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core import _multiarray_umath as mu  # type: ignore[no-redef]
    feats = mu.__cpu_features__
    return [f for f in mu.__cpu_dispatch__ if feats.get(f)]


#: CPU flags worth recording (the ones the libraries dispatch on).
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_vbmi2",
    "avx512_fp16",
    "amx_tile",
)


def machine_info() -> dict[str, Any]:
    """The facts that decide whether two runs can be bit-identical (for a record's ``env`` block)."""
    import numpy as np

    flags = cpu_flags()
    return {
        "cpu": {
            "model": _cpuinfo_field("model name") or platform.processor() or None,
            "vendor": _cpuinfo_field("vendor_id"),
            "family": _cpuinfo_field("cpu family"),
            "model_number": _cpuinfo_field("model"),
            "isa": [f for f in ISA_FLAGS if f in flags],
            "machine": platform.machine(),
        },
        "kernels": {
            "torch": _torch_blas(),
            "numpy": {"version": np.__version__, "dispatch": _numpy_dispatch()},
            "openblas": _openblas_libs(),
            "faiss_simd": _faiss_simd(),
        },
        "switches": {
            "preset": _applied["preset"],
            "applied": list(_applied["switches"]),
            "imitation": _applied["imitation"],
            "env": {k: os.environ[k] for k in KNOWN_VARS if k in os.environ},
            "loaded_before": list(_applied["late"]),
        },
    }


def apply_at_import() -> None:
    """:func:`apply_environment`, keeping a bad value's message for :func:`apply_runtime` (no traceback
    at import time)."""
    try:
        apply_environment()
    except ReproError as err:
        _applied["error"] = str(err)


def same_kernels(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two ``machine_info`` blocks promise the same kernels (ISA, library builds and levels)."""
    if not a or not b:
        return False
    return a.get("kernels") == b.get("kernels") and a.get("switches", {}).get("env") == b.get(
        "switches", {}
    ).get("env")


def describe(info: dict[str, Any] | None) -> str:
    """One line naming a ``machine_info`` block: CPU, ISA, torch kernel level, BLAS kernels, switches."""
    if not info:
        return "unknown machine (record made before machine info was recorded)"
    cpu, k, s = info.get("cpu", {}), info.get("kernels", {}), info.get("switches", {})
    isa = cpu.get("isa", [])
    top = "avx512" if "avx512f" in isa else "avx2" if "avx2" in isa else "avx" if "avx" in isa else "sse"
    blas = ", ".join(f"{b['owner']} {b['api']} {b['version']} {b['kernel']}" for b in k.get("openblas", []))
    torch_k = k.get("torch", {})
    return (
        f"{cpu.get('model')} ({top}); torch {torch_k.get('version')} {torch_k.get('cpu_capability')} "
        f"mkl {torch_k.get('mkl')} onednn {'on' if torch_k.get('onednn_enabled') else 'off'}; {blas}; "
        f"faiss {k.get('faiss_simd')}; switches {s.get('preset')}"
        + (f" imitating {s['imitation']}" if s.get("imitation") else "")
    )
