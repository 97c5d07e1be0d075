"""The dashboard's pages, in navigation order.

Each page is a :class:`View`: ``app.py`` gives ``st.navigation`` one ``st.Page(view.page,
url_path=view.url)`` per view, a callable rather than a file, so there is no page folder for
Streamlit to mistake for its legacy multipage mode (a ``pages/`` directory beside the script).
``view.page`` calls ``render(run)`` of the view's module here, ``dashboard/views/<url>.py``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class View:
    url: str
    title: str
    icon: str
    section: str
    visibility: str = "visible"

    @property
    def module(self) -> str:
        """The module that renders this page: ``dashboard.views.<url>``."""
        return f"{__name__}.{self.url}"

    def page(self) -> None:
        """The page body ``st.Page`` runs: the module's ``render`` on the current run."""
        from dashboard.data import current_run

        importlib.import_module(self.module).render(current_run())


VIEWS = [
    View("overview", "Overview", ":material/dashboard:", "Analysis"),
    View("confusion", "Confusion", ":material/grid_on:", "Analysis"),
    View("slices", "Slices", ":material/filter_alt:", "Analysis"),
    View("embeddings", "Embeddings", ":material/scatter_plot:", "Analysis"),
    View("gallery", "Gallery", ":material/photo_library:", "Images"),
    View("detail", "Image detail", ":material/image_search:", "Images"),
    View("data_issues", "Data issues", ":material/report:", "Images"),
    View("robustness", "Robustness", ":material/shield:", "Stress"),
    View("compare", "Compare", ":material/compare_arrows:", "Stress"),
    View("review", "Review queue", ":material/rate_review:", "Meeting"),
    View("report", "Report", ":material/summarize:", "Meeting"),
]
