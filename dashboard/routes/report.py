"""Page entry point: report."""

from dashboard.data import current_run
from dashboard.views.report import render

render(current_run())
