"""The web console (`/console/`): finance, the program team and the helpdesk read the ledger in a browser.

Served by `serve` beside the API, signed in with the same API keys and gated by the same roles
(ledger.access). Pages are rendered on the server from the report layer (projections.answers), so every
figure on a page is what the API answers for the same question; each is marked with `data-field`, the
API answer's JSON key, for tests and people's own scripts. Nothing is loaded from another host.
"""
