"""Figures. Every function takes arrays or records and returns a matplotlib Figure, so notebooks,
widgets and scripts draw the same thing. One submodule per topic; all names are re-exported here."""
import matplotlib

if matplotlib.get_backend().lower() in ("qtagg", "tkagg", "macosx", "gtk3agg") and not matplotlib.is_interactive():
    matplotlib.use("Agg")

from ftlib.plots.separation import *  # noqa: E402,F401,F403
from ftlib.plots.report import *  # noqa: E402,F401,F403
from ftlib.plots.diffusion import *  # noqa: E402,F401,F403
from ftlib.plots.mel import *  # noqa: E402,F401,F403
from ftlib.plots.training import *  # noqa: E402,F401,F403
from ftlib.plots.comparison import *  # noqa: E402,F401,F403
