"""Registry: a project's datasets, model versions and recipe versions, and forms to register new ones."""

from __future__ import annotations

import streamlit as st
from robustlit_dashboard import ui
from robustlit_dashboard.sources import SourceError

st.title("Registry")
source = ui.source()
ui.require_api(source, "Registry")
project = ui.pick_project(source, key="registry-project")
if flash := st.session_state.pop("registry-flash", None):
    st.success(flash)
COLUMNS = {
    "datasets": ["id", "name", "uri", "description", "created_at"],
    "models": ["id", "name", "version", "uri", "source_run_id", "description", "created_at"],
    "recipes": ["id", "name", "version", "base", "overrides", "description", "created_at"],
}
for kind, tab in zip(COLUMNS, st.tabs(["Datasets", "Models", "Recipes"]), strict=True):
    with tab:
        try:
            items = source.registry(project["id"], kind)
        except SourceError as error:
            st.error(str(error))
            continue
        if items:
            ui.items_table(f"{kind}", f"{kind.capitalize()} of {project['name']}", items, COLUMNS[kind],
                           key=f"registry-{kind}")
        else:
            st.info(f"No {kind} registered in {project['name']} yet.")
        if kind == "recipes":
            st.caption("Create recipes on the Recipe builder page.")
            continue
        with st.form(f"register-{kind}", clear_on_submit=True):
            st.markdown(f"**Register a {'dataset' if kind == 'datasets' else 'model version'}**")
            name = st.text_input("Name", key=f"{kind}-name")
            uri = st.text_input("URI" if kind == "datasets" else "Checkpoint URI", key=f"{kind}-uri")
            description = st.text_input("Description", key=f"{kind}-description")
            if st.form_submit_button("Register"):
                try:
                    created = source.create(project["id"], kind, {"name": name, "uri": uri,
                                                                  "description": description})
                except SourceError as error:
                    st.error(f"Not registered: {error}")
                else:
                    version = f" version {created['version']}" if "version" in created else ""
                    st.session_state["registry-flash"] = f"Registered {created['name']}{version}."
                    st.rerun()  # list the new entry
