"""`import tfft`: what the package sets before TensorFlow loads."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from conftest import REPO

x86_only = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                              reason="tfft turns oneDNN on only on x86, where it was measured")

PROBE = """
import json, os
import tfft
from tfft import train  # TensorFlow loads here, after tfft
from tensorflow.python.util import _pywrap_util_port
print(json.dumps([os.environ.get("TF_ENABLE_ONEDNN_OPTS"), _pywrap_util_port.IsMklEnabled()]))
"""


def _probe(**env: str) -> list:
    base = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, check=True,
                         env={**base, "TF_CPP_MIN_LOG_LEVEL": "2", **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


@x86_only
def test_importing_tfft_first_turns_on_onednns_cpu_kernels():
    # TensorFlow leaves them off on x86 CPUs without AVX-512's newer extensions (an AVX2-only AMD EPYC), where
    # tfft's SST-2 and SICK train steps took 1.15x and 1.14x longer without them (one run each).
    assert _probe() == ["1", True]


@x86_only
def test_a_users_choice_of_onednn_is_kept():
    assert _probe(TF_ENABLE_ONEDNN_OPTS="0") == ["0", False]
