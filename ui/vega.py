"""Charts made once for every visitor: an Altair chart turned into its Vega-Lite spec the first time
its inputs are seen, and the same spec handed to ``st.vega_lite_chart`` on every later run.

Building an Altair chart and converting it (``encode``, ``to_dict``, Altair's schema lookups, the
data's Arrow serialisation) is most of what a chart page costs the server: 60-70 % of a Compare or
Metrics view. Most views of a hosted demo draw the same charts (a shipped model's plane,
histograms, confusion matrix), so the spec is kept, keyed by a fingerprint of the builder's
inputs: the same inputs give the same spec, different inputs a new one, never a stale chart.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from typing import Any

from . import shared


def fingerprint(*args, **kwargs) -> str:
    """A digest of the arguments' content (their pickle: frames, arrays, lists, their attributes).
    Equal pickles mean equal content; equal content built another way may pickle differently,
    which only costs a second spec, never a wrong one."""
    return hashlib.blake2b(pickle.dumps((args, kwargs), protocol=5), digest_size=16).hexdigest()


def _to_spec(chart) -> dict:
    """The Vega-Lite spec ``st.altair_chart`` would send for ``chart``, datasets already in Arrow."""
    try:  # Streamlit's own conversion: the datasets become Arrow bytes once, here
        from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec
    except ImportError:  # another Streamlit: Altair's spec (Streamlit then converts its datasets per run)
        return chart.to_dict()
    return _convert_altair_to_vega_lite_spec(chart)


def spec(build: Callable[..., Any], *args, identity: Any = None, **kwargs) -> dict:
    """The Vega-Lite spec of ``build(*args, **kwargs)`` (an Altair chart), made once per distinct
    inputs. Hand it to ``st.vega_lite_chart(spec=...)``; Streamlit copies it before changing it.

    ``identity``: when given, the key instead of the inputs' fingerprint, for a chart whose
    content it determines (a shipped layout named by the checkpoint's content id): then the
    inputs need not even be built, ``build`` can be a function of no arguments that builds them.
    Kept in :data:`ui.shared.VEGA_SPECS`."""
    fp = fingerprint(identity) if identity is not None else fingerprint(*args, **kwargs)
    key = (getattr(build, "__module__", ""), getattr(build, "__qualname__", repr(build)), identity is not None, fp)
    hit = shared.VEGA_SPECS.get(key)
    if hit is not None:
        return hit
    made = _to_spec(build(*args, **kwargs))
    shared.VEGA_SPECS.put(key, made)
    return made
