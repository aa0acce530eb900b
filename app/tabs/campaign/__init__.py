"""The Campaign tab, one package: `layout.py` places and wires its components, `handlers.py` serves the annotator's
queue and the admin's campaign management, `figures.py` draws the results (ranking, win rates, win rate vs tokens).
"""
