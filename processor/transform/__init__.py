"""Transform stage: plain Python callables named in config."""
