import os

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO

pytestmark = pytest.mark.slow


def test_colab_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    notebook = nbformat.read(REPO / "notebooks" / "colab_tpu_finetune.ipynb", as_version=4)
    monkeypatch.setenv("TFFT_NOTEBOOK_DIR", str(tmp_path))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = "".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "Falling back to the default strategy" in outputs  # no TPU here
    assert "accuracy" in outputs and "Exported to" in outputs
    assert sorted(os.listdir(tmp_path / "saved_models" / "sst2_colab")) == ["1"]
