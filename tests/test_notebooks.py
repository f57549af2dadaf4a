"""Every notebook in notebooks/ runs top to bottom against the installed compclust, in its small
setting (``COMPCLUST_NOTEBOOK_SMALL=1``: small data, few epochs and seeds), so that all of them
together take about a minute and a half on an idle 2-core machine."""
import json
from pathlib import Path

import jax
import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
@jax.debug_key_reuse(False)  # the notebooks sweep: see NO_KEY_REUSE_CHECK in test_loop.py
def test_notebook_runs(path, monkeypatch):
    matplotlib.use("Agg")
    monkeypatch.setenv("COMPCLUST_NOTEBOOK_SMALL", "1")
    namespace = {"__name__": "__main__"}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)


def test_there_is_a_notebook():
    assert NOTEBOOKS


def test_notebooks_have_a_small_switch_and_no_outputs():
    for path in NOTEBOOKS:
        notebook = json.loads(path.read_text())
        code = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
        assert "COMPCLUST_NOTEBOOK_SMALL" in code or path.name == "01_quick_tour.ipynb", path.name
        assert all(not c.get("outputs") for c in notebook["cells"] if c["cell_type"] == "code"), path.name
