"""The dashboard's shared UI pieces (they import streamlit; runner/ never does)."""
