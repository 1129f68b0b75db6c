"""The dashboard's entry point: ``streamlit run app.py`` (``robustlit dashboard`` does this for you)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"
PAGES = [
    ("overview.py", "Overview", ":material/dashboard:"),
    ("compare.py", "Compare", ":material/compare_arrows:"),
    ("run_detail.py", "Run detail", ":material/monitoring:"),
    ("reports.py", "Reports", ":material/description:"),
    ("recipe_builder.py", "Recipe builder", ":material/edit_note:"),
    ("launcher.py", "Launcher", ":material/rocket_launch:"),
    ("registry.py", "Registry", ":material/inventory_2:"),
]

st.set_page_config(page_title="robustlit", page_icon=":material/shield:", layout="wide")
page = st.navigation([
    st.Page(VIEWS / file, title=title, icon=icon, default=index == 0)
    for index, (file, title, icon) in enumerate(PAGES)
])
page.run()
