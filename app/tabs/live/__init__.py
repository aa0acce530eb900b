"""The Live tab, one package: `layout.py` places and wires its components, `handlers.py` holds the per-viewer
online sessions, the clock ticks and the server-side replay.
"""
