"""Every notebook in notebooks/ runs top to bottom against the installed compclust."""
import json
from pathlib import Path

import jax
import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
@jax.debug_key_reuse(False)  # the notebooks sweep: see NO_KEY_REUSE_CHECK in test_loop.py
def test_notebook_runs(path):
    matplotlib.use("Agg")
    namespace = {"__name__": "__main__"}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)


def test_there_is_a_notebook():
    assert NOTEBOOKS
