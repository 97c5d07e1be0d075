"""Page entry point: embeddings."""

from dashboard.data import current_run
from dashboard.views.embeddings import render

render(current_run())
