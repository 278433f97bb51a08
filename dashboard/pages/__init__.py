"""Streamlit pages: thin views over pure helpers, reading only through the read API."""
