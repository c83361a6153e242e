"""Report plots keep matplotlib's style whatever was imported before them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.heavy  # imports causalml in a subprocess (~12 s): not in make test-fast


def test_importing_causalml_through_liftlab_leaves_the_plot_style_alone():
    """causalml restyles matplotlib globally when imported (fivethirtyeight); liftlab's import
    undoes that, so a report drawn after an uplift fit looks like one drawn before."""
    script = textwrap.dedent("""
        import importlib, matplotlib
        before = dict(matplotlib.rcParams)
        from liftlab.uplift.learners import import_causalml
        import_causalml()
        assert dict(matplotlib.rcParams) == before, "liftlab's causalml import changed the style"
        import causalml.metrics.visualize as v
        importlib.reload(v)  # what a bare `import causalml` does to the style
        assert matplotlib.rcParams["axes.facecolor"] != before["axes.facecolor"], "causalml no longer restyles"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
