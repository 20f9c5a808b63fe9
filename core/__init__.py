"""hostcp-studio engine: data, embeddings, HOST-CP selection, valuation, mislabels, store, jobs.

Importable without Streamlit; the UI in ``app/`` only calls into this package.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
