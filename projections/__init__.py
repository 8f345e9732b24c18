"""Read models folded from the event log: balances, tiers, statements, finance reports.

Every figure here is "as recorded": only events with effective_at <= the as-of
time count, so a report about a past time never changes once that time is swept.
"""
