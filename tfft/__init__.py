"""tfft: fine-tune pretrained text encoders with Keras on TensorFlow, export for TF Serving.

```python
import tfft

config = tfft.config.load_config("configs/demo.yaml")
result = tfft.train.run(config)
```
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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
