"""Streamlit dashboard over runs and their predictions (reads only; never trains)."""
