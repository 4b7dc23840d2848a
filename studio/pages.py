"""The dashboard's pages: the one list of them. app.py registers it with Streamlit's navigation, Home links
to every page from it, and the page tests, the browser tests and `bench ui` visit what it names.

Plain data, without Streamlit, so that anything can read it. A new page is a file in app_pages/ and one line
in PAGES. The icons are emoji, like app.py's favicon: Streamlit fetches a `:material/…:` favicon from Google's
font server (fonts.gstatic.com), and the studio must not fetch anything from outside the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class Page:
    """One page: its script (relative to the project root), its title and icon in the navigation, and what it is
    for, in Home's list of the other pages. The default page (Home) is served at the root URL."""

    file: str
    title: str
    icon: str
    about: str
    default: bool = False

    @property
    def name(self) -> str:
        """The script's name without .py: what Streamlit serves the page under (e.g. error_analysis)."""
        return PurePosixPath(self.file).stem

    @property
    def url_path(self) -> str:
        """The page's path in the URL: "" for the default page, its name for the others."""
        return "" if self.default else self.name


PAGES = (
    Page("app_pages/home.py", "Home", "🏠", "", default=True),
    Page("app_pages/data.py", "Data", "🗂️", "bring your own images, check their health, pick the active dataset"),
    Page("app_pages/train.py", "Train", "🏋️", "configure and launch a training, watch its curves live, stop it"),
    Page("app_pages/classify.py", "Classify", "🔍", "drag in your own images and see the top-3 classes"),
    Page("app_pages/predictions.py", "Predictions", "🖼️", "browse the test images with filters and sorting"),
    Page("app_pages/error_analysis.py", "Error analysis", "🩺", "confusion matrix, per-class scores, top losses"),
    Page("app_pages/runs.py", "Runs", "📜", "compare, download and delete runs"),
)
