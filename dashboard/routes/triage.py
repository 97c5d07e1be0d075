"""Page entry point: triage."""

from dashboard.data import current_run
from dashboard.views.triage import render

render(current_run())
