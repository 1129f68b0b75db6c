"""Keep pytest's doctest collection away from the Streamlit scripts: importing them would run the app."""

collect_ignore = ["robustlit_dashboard/app.py", "robustlit_dashboard/views"]
