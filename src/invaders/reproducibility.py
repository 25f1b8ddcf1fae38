"""Which code paths TensorFlow takes on this CPU: `reproducibility.mode` from params, applied before its first op.

`portable` makes the outputs independent of the CPU model and core count (README, Reproducibility):
- oneDNN (TensorFlow's convolutions, dense layers and the sgemm its Eigen contractions call) runs
  its AVX2 kernels on any CPU that has more (`ONEDNN_MAX_CPU_ISA`): the weights differ between
  its AVX2 and AVX-512 kernels;
- XLA (the one-state forward pass) generates AVX2 code (`--xla_cpu_max_isa`): its results differ
  between instruction sets too (measured with SSE4.2 against AVX2);
- TensorFlow's intra- and inter-op thread counts come from `reproducibility.threads`, not from
  the core count: a one-state forward pass gives different bits on 1 and 2 threads.
Both variables are read when oneDNN and XLA first run, so `apply` works after `import tensorflow`
as long as no op has run yet. OpenCV's frame resize is bit-identical with and without its SIMD
paths, and NumPy's AVX-512 `power` is kept out of the outputs by `replay` (measured, README).

`native` leaves all of it to TensorFlow: fastest, reproducible on the same machine type only.
Playing (evaluate, `invaders play`) runs on one thread in both modes: faster for its small batches (measured).
"""

from __future__ import annotations

import os
import platform
import sys

from invaders.errors import UserError

ISA = "AVX2"  # the floor: every x86-64 CPU since Intel Haswell (2013) and AMD Excavator (2015)
XLA_FLAG = f"--xla_cpu_max_isa={ISA}"
# The CPU flags that decide a code path somewhere in the stack, for the run's record.
RELEVANT_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                  "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_tile")

_applied: dict[str, object] | None = None


def cpu_info() -> dict[str, str]:
    """The first processor's /proc/cpuinfo entries (empty where there is none)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_name() -> str:
    """Model name with family and model numbers: cloud CPUs often report only "AMD EPYC"."""
    info = cpu_info()
    if not info:
        return platform.processor() or platform.machine() or "unknown CPU"
    return (f"{info.get('model name', 'unknown CPU')} (family {info.get('cpu family', '?')},"
            f" model {info.get('model', '?')})")


def cpu_flags() -> list[str]:
    """The relevant subset of this CPU's flags."""
    flags = set(cpu_info().get("flags", "").split())
    return [f for f in RELEVANT_FLAGS if f in flags]


def _check_cpu() -> None:
    flags = set(cpu_info().get("flags", "").split())
    if platform.machine() not in ("x86_64", "AMD64") or not {"avx2", "fma"} <= flags:
        raise UserError(f"reproducibility.mode: 'portable' needs an x86-64 CPU with AVX2 and FMA; this one"
                        f" ({cpu_name()}, {platform.machine()}) lacks them (allowed here: 'native')")


def apply(params, playing: bool = False, without_tensorflow: bool = False) -> dict[str, object]:
    """Apply `params.reproducibility` to this process; call before TensorFlow's first op.

    Every entry point calls it (stages, CLI, benchmarks, a sweep's trial). `playing`: the process
    only plays episodes (one thread in both modes). Returns what `tags` records. A second call with
    the same settings does nothing; with others it raises (TensorFlow fixes them at its first op).
    `without_tensorflow`: a process that never imports it (the random baseline) only records them.
    """
    global _applied
    wanted = _wanted(params, playing)
    portable, threads = wanted["mode"] == "portable", wanted["threads"]
    if _applied is not None:
        if without_tensorflow:  # runs no TensorFlow (a sweep trial's baseline): only records what was applied
            return settings()
        if _applied != wanted:
            raise RuntimeError(f"reproducibility.apply: already applied {_applied} in this process, now asked for"
                               f" {wanted}")
        return settings()
    if portable:
        _check_cpu()
        if _tensorflow_started():  # oneDNN and XLA have read their variables already: the cap would be ignored
            raise RuntimeError("reproducibility.apply() must be called before TensorFlow runs its first op")
        os.environ["ONEDNN_MAX_CPU_ISA"] = ISA
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith("--xla_cpu_max_isa=")]
        os.environ["XLA_FLAGS"] = " ".join([*flags, XLA_FLAG])
    if threads is not None and not without_tensorflow:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TF is already running: a caller's mistake, not a user's
            raise RuntimeError("reproducibility.apply() must be called before TensorFlow runs its first op") from None
    _applied = wanted
    return settings()


def _tensorflow_started() -> bool:
    if "tensorflow" not in sys.modules:
        return False
    from invaders.compat import tf as tf_compat  # here: importing it checks TensorFlow's version

    return tf_compat.eager_context_started()  # the context is created by the first op


def _wanted(params, playing: bool) -> dict[str, object]:
    cfg = params.reproducibility
    threads = 1 if playing else (cfg.threads if cfg.mode == "portable" else None)
    return {"mode": cfg.mode, "threads": threads}


def settings() -> dict[str, object]:
    """What this process runs with: mode, CPU, flags, thread counts, caps (defaults where not applied)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = (_applied or {}).get("threads")
    return {
        "mode": (_applied or {}).get("mode", "unset"),
        "cpu": cpu_name(),
        "cpu_flags": " ".join(cpu_flags()),
        "cores": cores,
        # TensorFlow's default for both pools is the number of cores this process may run on.
        "intra_op_threads": threads or cores,
        "inter_op_threads": threads or cores,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset"),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def tags() -> dict[str, str]:
    """`settings()` as MLflow tags (`repro.*`), for every run."""
    return {f"repro.{k}": str(v) for k, v in settings().items()}
