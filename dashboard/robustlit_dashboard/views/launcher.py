"""Launcher: pick model, dataset, recipe and seeds, submit through the API, then follow the run."""

from __future__ import annotations

from urllib.parse import quote

import streamlit as st
from robustlit_dashboard import ui
from robustlit_dashboard.forms import dataset_choices, launch_body, model_choices
from robustlit_dashboard.sources import SourceError

from robustlit.errors import ConfigError

st.title("Launcher")
source = ui.source()
ui.require_api(source, "Launcher")
project = ui.pick_project(source, key="launch-project")
try:
    datasets = dataset_choices(source.registry(project["id"], "datasets"))
    models = model_choices(source.registry(project["id"], "models"))
    stored = [f"{item['name']}:{item['version']}" for item in source.registry(project["id"], "recipes")]
    templates = [item["name"] for item in source.templates()]
except SourceError as error:
    st.error(str(error))
    st.stop()

with st.form("launch"):
    model = st.selectbox("Model", range(len(models)), format_func=lambda i: models[i]["label"])
    dataset = st.selectbox("Dataset", range(len(datasets)), format_func=lambda i: datasets[i]["label"])
    recipe = st.selectbox("Recipe", [*stored, *templates], help="Stored recipes (name:version), then templates.")
    seeds = st.text_input("Seeds", value="0", help="One run per seed: 0,1,2 or 0-4 (at most 20).")
    name = st.text_input("Run name (optional)")
    extra = st.text_area("Extra overrides (one per line)", placeholder="trainer.max_epochs=5")
    submitted = st.form_submit_button("Launch", type="primary")
if submitted:
    try:
        body = launch_body(recipe, datasets[dataset], models[model], seeds, extra.splitlines(), name)
        run = source.submit(project["id"], body)
    except (ConfigError, SourceError) as error:
        st.error(f"Not launched: {error}")
    else:
        st.session_state["launched"] = run.id
        st.success(f"Launched run {run.name} ({run.id}), {len(body['seeds'])} seed(s).")

launched = st.session_state.get("launched")
if launched:
    st.subheader("Follow the run")
    st.markdown(f"[Open the run in Run detail](run_detail?run={quote(launched)})")
    try:
        run = source.run(launched)
    except SourceError as error:
        st.warning(str(error))
        st.stop()
    st.markdown(f"**{run.name}** ({run.id})")
    ui.log_tail(source, run, lines=30)
