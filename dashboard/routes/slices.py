"""Page entry point: slices."""

from dashboard.data import current_run
from dashboard.views.slices import render

render(current_run())
