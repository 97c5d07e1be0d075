"""Page entry point: review."""

from dashboard.data import current_run
from dashboard.views.review import render

render(current_run())
