"""Page entry point: gallery."""

from dashboard.data import current_run
from dashboard.views.gallery import render

render(current_run())
