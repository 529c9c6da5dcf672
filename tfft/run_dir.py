"""A run's folder: the files in it, and starting, resuming or refusing a run there.

`<output_dir>/` holds `config.yaml`, the label or tag vocabulary
(`labels.txt`), `checkpoints/best.weights.h5`, `model.weights.h5`,
`history.csv`, `logs/` (TensorBoard), `metrics.json`, and `backup/` while
training is unfinished.
"""

from __future__ import annotations

import csv
import logging
import pathlib
import shutil

from tfft.config import Config, ConfigError, from_dict
from tfft.errors import OutputDirError

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.weights.h5"
BEST_WEIGHTS = "checkpoints/best.weights.h5"
BACKUP_DIR = "backup"
HISTORY_FILE = "history.csv"
COMPLETE_FILE = "run_complete.json"
# Keys that may change between a run and its resumption.
_RESUMABLE_CHANGES = {"train.overwrite_output_dir", "export.enabled", "export.base_dir"}

__all__ = ["OutputDirError", "prepare_output_dir", "best_so_far"]


def prepare_output_dir(config: Config, output_dir: pathlib.Path) -> bool:
    """Makes `output_dir` ready; returns whether an interrupted run is resumed.

    - empty or missing: a new run;
    - an unfinished run with the same config: resumed from its last epoch;
    - a finished run, or an unfinished one with another config: refused,
      unless `train.overwrite_output_dir` is true;
    - a non-empty folder that is not a tfft run: refused.
    """
    saved_config = output_dir / CONFIG_FILE
    resuming = False
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if config.train.overwrite_output_dir:
            logger.warning("Overwriting %s (train.overwrite_output_dir=true).", output_dir)
            shutil.rmtree(output_dir)
        elif not saved_config.is_file():
            raise OutputDirError(
                f"output_dir `{output_dir}` exists, is not empty and holds no tfft run ({CONFIG_FILE} is "
                "missing). Choose another `output_dir`."
            )
        elif (output_dir / COMPLETE_FILE).is_file():
            raise OutputDirError(
                f"output_dir `{output_dir}` holds a finished run. Set a new `output_dir`, or "
                "`--set train.overwrite_output_dir=true` to replace it."
            )
        else:
            differences = _config_differences(config, saved_config)
            if differences:
                raise OutputDirError(
                    f"output_dir `{output_dir}` holds an unfinished run with another config ("
                    + "; ".join(differences[:5])
                    + "). Run the same config to resume it, set a new `output_dir`, or "
                    "`--set train.overwrite_output_dir=true` to start over."
                )
            resuming = True
            logger.info("Resuming the unfinished run in %s from its last completed epoch.", output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config.save(saved_config)
    return resuming


def _config_differences(config: Config, saved_path: pathlib.Path) -> list[str]:
    import yaml

    try:
        saved = from_dict(yaml.safe_load(saved_path.read_text(encoding="utf-8")) or {})
    except (ConfigError, yaml.YAMLError) as err:
        return [f"its {CONFIG_FILE} does not load: {err}"]
    differences = []
    for section, values in config.to_dict().items():
        old_values = saved.to_dict()[section]
        if not isinstance(values, dict):
            values, old_values = {"": values}, {"": old_values}
        for key, value in values.items():
            name = f"{section}.{key}".rstrip(".")
            if name not in _RESUMABLE_CHANGES and old_values.get(key) != value:
                differences.append(f"{name}: {old_values.get(key)!r} there, {value!r} now")
    return differences




def best_so_far(output_dir: pathlib.Path, key: str, mode: str) -> float | None:
    """The best `key` (e.g. `val_accuracy`) an interrupted run logged, so resuming keeps its best checkpoint."""
    path = output_dir / HISTORY_FILE
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        scores = [float(row[key]) for row in csv.DictReader(f) if row.get(key)]
    if not scores:
        return None
    return max(scores) if mode == "max" else min(scores)
