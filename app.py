"""CIFAR-10 VGG16 studio: `streamlit run app.py`.

The entrypoint draws the sidebar shared by every page (dataset status, active
model) and then runs the page picked in the navigation.
"""

import streamlit as st

from studio import ui as studio_ui

st.set_page_config(page_title="CIFAR-10 VGG16 studio", page_icon=":material/neurology:", layout="wide")

PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/data.py", title="Data", icon=":material/dataset:"),
    st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("app_pages/classify.py", title="Classify", icon=":material/image_search:"),
    st.Page("app_pages/predictions.py", title="Predictions", icon=":material/grid_view:"),
    st.Page("app_pages/error_analysis.py", title="Error analysis", icon=":material/troubleshoot:"),
    st.Page("app_pages/runs.py", title="Runs", icon=":material/history:"),
]

page = st.navigation(PAGES)
studio_ui.sidebar()
page.run()
