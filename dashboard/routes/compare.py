"""Page entry point: compare."""

from dashboard.data import current_run
from dashboard.views.compare import render

render(current_run())
