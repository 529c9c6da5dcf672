"""The run's float policy (`train.mixed_precision`), and a hint where this CPU would train faster in bfloat16.

On a CPU with AMX (Intel's matrix units: `amx_bf16` among `/proc/cpuinfo`'s
flags) oneDNN multiplies bfloat16 matrices several times faster than float32
ones, and `mixed_bfloat16` trained `configs/sst2_minilm.yaml` 1.50x faster
(docs/performance.md, *Speed*). Where bfloat16 has no such kernels it can be
slower than float32, so the policy is never changed for the user: the run
logs the hint once, and `train.mixed_precision` decides. A search's or
`tfft cv`'s runs after the first (`LATER_RUN`, set by `tfft.child_run`) do not repeat it.
"""

from __future__ import annotations

import logging
import os
import pathlib

import keras
import tensorflow as tf

logger = logging.getLogger(__name__)

#: Set ("1") in the environment of a search's or `tfft cv`'s runs after the first (`tfft.child_run`): a message
#: each run would repeat (the hint below) is logged by the first run alone.
LATER_RUN = "TFFT_LATER_RUN"

CPU_INFO = pathlib.Path("/proc/cpuinfo")


def set_policy(mixed_precision: str) -> None:
    """Sets Keras' global dtype policy for `train.mixed_precision` (`none` is float32), and logs `bfloat16_hint`."""
    keras.mixed_precision.set_global_policy("float32" if mixed_precision == "none" else mixed_precision)
    if not os.environ.get(LATER_RUN) and (hint := bfloat16_hint(mixed_precision)):
        logger.info(hint)


def cpu_flags(cpu_info: pathlib.Path = CPU_INFO) -> set[str]:
    """The CPU's feature flags as Linux lists them; empty where the file is missing or unreadable."""
    try:
        text = cpu_info.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return set(value.split())
    return set()


def bfloat16_hint(mixed_precision: str, flags: set[str] | None = None) -> str | None:
    """The line to log when a float32 run trains on a CPU with AMX and no accelerator, else None."""
    if mixed_precision != "none" or tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return None
    if "amx_bf16" not in (cpu_flags() if flags is None else flags):
        return None
    return ("This CPU has AMX (`amx_bf16`): its bfloat16 matmuls are several times faster than float32's, and "
            "`--set train.mixed_precision=mixed_bfloat16` trained SST-2 1.50x faster on one (dev accuracy within "
            "the seeds' spread; docs/performance.md, Speed). Training stays in float32 unless you set it.")
