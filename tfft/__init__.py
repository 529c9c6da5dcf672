"""tfft: fine-tune pretrained text encoders with Keras on TensorFlow, export for TF Serving.

```python
import tfft

config = tfft.config.load_config("configs/demo.yaml")
result = tfft.train.run(config)
```
"""

import os
import platform

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# TensorFlow runs oneDNN's CPU kernels by default only on x86 CPUs with AVX512_VNNI, AVX512_BF16, AVX-VNNI or AMX
# (its RFC 400), and Eigen's elsewhere. On an AVX2-only AMD EPYC, Eigen's batched matmul runs attention's 32-wide
# heads one product at a time from 23 tokens on (3-5x oneDNN's time a product there), and tfft's SST-2 and SICK
# train steps took 1.15x and 1.14x longer, one run each, and its steps at 12 to 48 tokens 1.19-1.36x longer
# (docs/performance.md, *oneDNN on CPUs without AVX-512*). So tfft turns them on unless the
# user chose (`TF_ENABLE_ONEDNN_OPTS=0` keeps Eigen's); TensorFlow reads the variable once, when it is imported, so
# this holds where tfft is imported first: its CLI, its child processes, a notebook's `import tfft`.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from tfft import config  # noqa: E402

__version__ = "0.1.0"

__all__ = ["config", "train", "evaluate", "export", "predict", "data", "backbones", "tasks", "metrics", "model",
           "search", "cross_validation", "warm_runs", "__version__"]


def __getattr__(name):
    # Heavy modules (TensorFlow) load on first use: `import tfft` stays fast.
    if name in ("train", "evaluate", "export", "predict", "data", "backbones", "optimization", "distribute", "tasks",
                "metrics", "model", "run_dir", "freezing", "layerwise", "lora", "search", "cross_validation", "folds",
                "ensemble", "warm_runs"):
        import importlib

        return importlib.import_module(f"tfft.{name}")
    raise AttributeError(f"module 'tfft' has no attribute {name!r}")
