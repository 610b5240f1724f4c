"""Sample and load events for the example pipeline (``weir produce``)."""
