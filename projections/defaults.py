"""Defaults and limits of the read side that the CLI shows in its options' help.

Dependency-free: the CLI declares every command with these before it loads eventsourcing
(the modules of projections/ that apply them import them from here).
"""

#: Bounds on the re-poll interval (seconds).
POLL_INTERVAL_S_MIN = 0.05
POLL_INTERVAL_S_MAX = 60.0
#: The CloudEvents `ce_source` of every published record, unless told otherwise.
DEFAULT_SOURCE = "urn:points-ledger"
#: The member's latest changes shown with each discrepancy, unless told otherwise.
CONTEXT_EVENTS = 5
#: The field of a reconcile report (JSON) that lists its discrepancies.
REPORT_ITEMS = "items"
#: The trailing window an estimated breakage rate looks back over, unless told otherwise.
BREAKAGE_WINDOW_DAYS = 365
#: A rebuild on PostgreSQL runs in worker processes only from this many log events: starting a worker
#: costs about a second, more than one process takes to build a small log.
PARALLEL_REBUILD_MIN_EVENTS = 50_000
#: The most worker processes a rebuild starts.
REBUILD_WORKERS_MAX = 16
#: Where a rebuild records the log changes it was told to accept (projections.log_check).
ACCEPTANCES_TABLE = "pl_log_changes_accepted"
#: Longest reason (and login name) an acceptance records.
ACCEPTANCE_TEXT_CHARS_MAX = 256
