"""What two services or more share, by kind.

- ``shared.contracts``: what crosses between services: the event contracts, the topology
  (every topic, who writes and who reads it), the item catalogue, identity numbers.
- ``shared.platform``: a process's basics: settings, logging, PostgreSQL, asyncio helpers,
  start-up and shutdown of a service.
- ``shared.messaging``: Kafka plumbing: the consumer engine and its inbox, the outbox and
  its relay, signatures, topic provisioning.
- ``shared.department``: the SDK a department adapter is written with.

Nothing here imports ``services``: the services hand in what the plumbing needs (their
catalogue folders, their handlers).
"""
