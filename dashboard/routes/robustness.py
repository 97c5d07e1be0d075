"""Page entry point: robustness."""

from dashboard.data import current_run
from dashboard.views.robustness import render

render(current_run())
