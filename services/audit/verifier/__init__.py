"""``onedoor-audit verify``: replay the event log and report every violation of the
zero-error invariants. One module per concern; import from the module itself:

- ``report``: the violation kinds, ``Violation``, ``VerifyReport``;
- ``log``: the log's records (``LogRecord``), reading them from Kafka (``read_log``),
  and the replay's first pass over them (``Reader``);
- ``signatures``: who may sign what, and Ed25519 checks made once per distinct record;
- ``facts``: what the rules keep of each event, per case;
- ``placement``: Kafka's own facts, each record's key and partition;
- ``judge``: the rules over one accepted case (``CaseJudge``);
- ``catalogued``: what the catalogue and topology say, worked out once per item;
- ``clock``: the time rules of one case (``CaseClock``, ``Timing``);
- ``replay``: ``verify``, records in, report out (pure, no I/O);
- ``stored``: what a replay asks the audit store (ingest verdicts, its hash chains);
- ``shards``: sharing a replay between processes, and merging their reports;
- ``run``: ``verify_log``, a deployment's whole log verified end to end.
"""
