"""Classify: drop in your own images and see what the active model makes of them."""

import streamlit as st

import studio_ui
from cifar_core import plots, studio

st.title("Classify")
st.write("Drag images here (or pick them): each is resized to 32×32, as CIFAR-10 images are, and classified.")

model = studio_ui.require_model()
files = st.file_uploader("Images", type=["png", "jpg", "jpeg", "webp", "bmp", "gif"], accept_multiple_files=True,
                         help="several at once; any size, colour mode or orientation")
if not files:
    st.stop()

results = studio_ui.classifier(model).classify_bytes([(f.name, f.getvalue()) for f in files])
good = sum(r.error is None for r in results)
st.subheader(f"{good} of {len(results)} image(s) classified")
for i, (upload, result) in enumerate(zip(files, results)):
    with st.container(border=True):
        thumb, chart = st.columns([1, 3])
        with thumb:
            preview = studio.thumbnail(upload.getvalue()) if result.error is None else None
            if preview is not None:
                st.image(preview, width=160)
            st.markdown(f"**{result.file}**")
        with chart:
            if result.error is not None:
                st.error(f"Could not classify this file: {result.error}", icon=":material/broken_image:")
            else:
                best = result.top[0]
                st.markdown(f"### {best['label']} · {best['prob']:.1%}")
                st.plotly_chart(plots.probs_figure({t["label"]: t["prob"] for t in result.top}, height=160),
                                key=f"top3-{i}", config={"displayModeBar": False})
                st.caption(f"top 3 of 10 classes · {model.label}")
