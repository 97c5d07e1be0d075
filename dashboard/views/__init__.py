"""The dashboard's pages, in navigation order.

Each page is a thin file in ``dashboard/routes/`` (so AppTest can open it) that calls
``render(run)`` of its module here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PAGES_DIR = Path(__file__).resolve().parent.parent / "routes"


@dataclass(frozen=True)
class View:
    url: str
    title: str
    icon: str
    section: str
    visibility: str = "visible"

    @property
    def file(self) -> Path:
        return PAGES_DIR / f"{self.url}.py"


VIEWS = [
    View("overview", "Overview", ":material/dashboard:", "Analysis"),
    View("triage", "Triage", ":material/healing:", "Analysis"),
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
