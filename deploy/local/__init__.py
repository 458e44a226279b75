"""Local Kafka broker and Schema Registry without Docker: jars from Maven, processes on loopback."""
