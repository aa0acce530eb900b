"""The A/B compare tab, one package: `layout.py` places and wires its components, `handlers.py` runs the blind
round and records the vote.
"""
