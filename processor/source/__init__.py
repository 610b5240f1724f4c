"""Source stage: the Kafka consumer group and the progress of each owned partition."""
