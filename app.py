"""CIFAR-10 VGG16 studio: `streamlit run app.py`.

The entrypoint draws the sidebar shared by every page (dataset status, active
model) and then runs the page picked in the navigation. The pages are
studio/pages.py's list.
"""

import streamlit as st

from studio.pages import PAGES
from studio.sidebar import sidebar

# An emoji, as the pages' icons are (studio/pages.py): a :material/…: favicon is fetched from fonts.gstatic.com.
st.set_page_config(page_title="CIFAR-10 VGG16 studio", page_icon="🧠", layout="wide")

page = st.navigation([st.Page(p.file, title=p.title, icon=p.icon, default=p.default) for p in PAGES])
sidebar()
page.run()
