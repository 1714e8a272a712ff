"""What the test tiers share: builders of requests and events, waiting on a condition,
and in-memory fakes of the service tables for the unit tier."""
