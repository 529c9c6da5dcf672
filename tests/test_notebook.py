import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOK = REPO / "notebooks" / "colab_tpu_finetune.ipynb"


def test_the_notebook_imports_tfft_before_tensorflow():
    # TensorFlow reads `TF_ENABLE_ONEDNN_OPTS` (which `import tfft` sets on x86) once, when it loads.
    code = [line.strip() for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "code"
            for line in cell.source.splitlines()]
    first_tensorflow = next(i for i, line in enumerate(code) if line.startswith(("import tensorflow", "from tensorflow")))
    first_tfft = next(i for i, line in enumerate(code) if line.startswith(("import tfft", "from tfft")))
    assert first_tfft < first_tensorflow, code[first_tensorflow]


@pytest.mark.slow
def test_colab_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.setenv("TFFT_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "Falling back to the default strategy" in outputs  # no TPU here
    assert "accuracy" in outputs and "Exported to" in outputs
    assert sorted(os.listdir(tmp_path / "saved_models" / "sst2_colab")) == ["1"]
