"""The HTTP API: the ledger's second face beside the command line, for tills, member apps, the helpdesk and
finance (`points-ledger serve`).

Like the CLI it holds no report arithmetic and no SQL: reads ask the report layer (projections.answers) over
the views, writes go through the ledger's write path (LedgerApplication.apply_one), and who may do what is
ledger.access's. Modules: `service` (what one server process holds open), `problems` (RFC 9457 errors),
`auth` (Bearer keys and roles), `reads`, `writes`, `operations` (health, readiness, metrics), `observe`
(access log and request metrics), `app` (the application built from them) and `server` (uvicorn).
"""
