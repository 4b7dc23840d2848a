"""The dashboard's Streamlit helpers, one module per job; each page imports the modules it uses."""
