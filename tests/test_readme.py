"""The README's commands work in the order written, on a fresh copy of the repository."""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


def _blocks(section: str, language: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    start = text.index(f"\n## {section}\n")
    end = text.index("\n## ", start + 1)
    return re.findall(rf"```{language}\n(.*?)```", text[start:end], flags=re.S)


def test_set_up_and_use_commands_run_in_order(tmp_path):
    """The demo of *Set up*, then every command of *Use*; the demo config is cut to 300 rows and 1 epoch."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    demo = yaml.safe_load((tmp_path / "configs" / "demo.yaml").read_text())
    demo["train"]["epochs"] = 1
    demo["data"]["max_train_examples"] = 300
    (tmp_path / "configs" / "demo.yaml").write_text(yaml.safe_dump(demo))

    set_up = next(line for line in _blocks("Set up", "bash")[0].splitlines() if "tfft train" in line)
    commands = [set_up.split("&&", 1)[1].strip()] + _blocks("Use", "bash")[0].replace("\\\n", " ").splitlines()
    tfft = pathlib.Path(sys.executable).with_name("tfft")
    script = "set -e\n" + "\n".join(commands).replace("python -m tfft", f"{sys.executable} -m tfft")
    script = re.sub(r"(?m)^tfft ", f"{tfft} ", script)
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "saved_models" / "demo" / "2" / "saved_model.pb").is_file()  # `tfft export`
    assert (tmp_path / "predictions.csv").is_file()
    assert (tmp_path / "runs" / "demo_short" / "run_complete.json").is_file()
    assert (tmp_path / "runs" / "demo_flags" / "run_complete.json").is_file()

    snippet = _blocks("Use", "python")[0]
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "demo_python" / "run_complete.json").is_file()
