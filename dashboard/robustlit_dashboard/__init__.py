"""robustlit dashboard: a Streamlit app that compares runs from the service API or a runs folder."""
