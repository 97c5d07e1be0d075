"""Page entry point: overview."""

from dashboard.data import current_run
from dashboard.views.overview import render

render(current_run())
