"""The ConvLens Streamlit dashboard: UI only; every HTTP call goes through ``client.http``."""
