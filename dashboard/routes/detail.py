"""Page entry point: detail."""

from dashboard.data import current_run
from dashboard.views.detail import render

render(current_run())
