"""What crosses between services: events, topology, catalogue, identity numbers."""
