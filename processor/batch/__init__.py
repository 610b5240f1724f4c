"""Batch stage: bounded lane buffers and the batches cut from them."""
