"""Recipe builder: start from a template in conf/recipe, edit as a form or as YAML, validate, then save."""

from __future__ import annotations

import streamlit as st
from robustlit_dashboard import ui
from robustlit_dashboard.forms import recipe_yaml, validate_recipe
from robustlit_dashboard.sources import SourceError

from robustlit.errors import ConfigError

st.title("Recipe builder")
source = ui.source()
ui.require_api(source, "Recipe builder")
project = ui.pick_project(source, key="recipe-project")
try:
    templates = {item["name"]: item for item in source.templates()}
except SourceError as error:
    st.error(str(error))
    st.stop()
names = list(templates)

with st.form("recipe-form"):
    st.markdown("Fill the form and press **Write YAML**, or edit the YAML below directly.")
    name = st.text_input("Recipe name", placeholder="pgd_at_short", help="Letters, digits, '_', '.' or '-'.")
    base = st.selectbox("Start from template", names, help="A recipe from conf/recipe that this one overrides.")
    description = st.text_input("Description")
    overrides = st.text_area("Overrides (one per line)", placeholder="trainer.max_epochs=30\nregularizer=[mixup]")
    if st.form_submit_button("Write YAML"):
        st.session_state["recipe-yaml"] = recipe_yaml(name, base, description, overrides.splitlines())

if base in templates:
    with st.expander(f"Template {base}: {templates[base].get('description', '')}"):
        st.code(templates[base].get("content", ""), language="yaml")

text = st.text_area("Recipe YAML", key="recipe-yaml", height=220,
                    help="Keys: name, base (a template), description, overrides (a list of Hydra overrides).")
validate, save = st.columns(2)
if validate.button("Validate", use_container_width=True):
    try:
        body = validate_recipe(text, names)
    except ConfigError as error:
        st.error(f"Not valid: {error}")
    else:
        st.success(f"Valid: recipe {body['name']} on {body['base'] or 'no template'} with "
                   f"{len(body['overrides'])} override(s).")
if save.button("Save to the service", type="primary", use_container_width=True):
    try:
        body = validate_recipe(text, names)
        saved = source.create(project["id"], "recipes", body)
    except (ConfigError, SourceError) as error:
        st.error(f"Not saved: {error}")
    else:
        st.success(f"Saved {saved['name']} version {saved['version']} in project {project['name']}.")
