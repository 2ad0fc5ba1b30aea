"""Streamlit helpers of the Contrastive Explorer app (the library in ``cl/`` never imports streamlit).

- :mod:`ui.state`: the only place that touches ``st.session_state``.
- :mod:`ui.shared`: everything the server keeps for every session, named in one place, and its bounded cache.
- :mod:`ui.models`: where checkpoints live (shipped, runs folder) and what they are.
- :mod:`ui.cache`: bounded, shared caches (models, embeddings, projections, evaluations).
- :mod:`ui.images`: thumbnails, data URLs and image grids.
- :mod:`ui.charts`: Altair charts.
- :mod:`ui.jobs`: background training threads with a per-session and server-wide cap.
- :mod:`ui.sidebar`: the sidebar shared by every page.
"""
