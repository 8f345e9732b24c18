"""The read side of the event log: read models (balances, tiers, statements, finance reports) and what is
built on them: verify and the digest, reconciliation, the sweep's choice of members, balance events.

Every report figure is "as recorded": only events with effective_at <= the as-of
time count, so a report about a past time never changes once that time is swept.
"""
