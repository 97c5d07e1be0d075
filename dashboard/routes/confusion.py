"""Page entry point: confusion."""

from dashboard.data import current_run
from dashboard.views.confusion import render

render(current_run())
