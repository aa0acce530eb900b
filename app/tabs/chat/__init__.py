"""The Chat tab, one package: `layout.py` places and wires its components; `handlers.py` loads videos, answers and
reworks the conversation; `views.py` draws the Frames / Compression / Attention views; `ratings.py` records ratings.
"""
