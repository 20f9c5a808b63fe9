"""The Streamlit front end of hostcp-studio: a router, one page per journey step, shared widgets."""
