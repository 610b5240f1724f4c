"""Kafka Connect with the Debezium JDBC sink: ``make bench``'s JVM peer (see phase.py)."""
