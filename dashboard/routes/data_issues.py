"""Page entry point: data_issues."""

from dashboard.data import current_run
from dashboard.views.data_issues import render

render(current_run())
