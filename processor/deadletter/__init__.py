"""Operating the dead letters: list, show, replay."""
