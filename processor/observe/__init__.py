"""Observability beside the pipeline: the HTTP endpoints and the lag poller."""
