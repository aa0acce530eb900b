"""One module per tab of the studio: each builds its layout and wires its own events."""
