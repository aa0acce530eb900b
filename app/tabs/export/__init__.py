"""The Export tab, one package: `layout.py` places and wires its components, `handlers.py` exports every format
and pushes to the Hub (the formats themselves are the gradio-free `app/data/exports.py`).
"""
