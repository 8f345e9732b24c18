"""The ledger's storage: everything that knows the event store is a database.

The stored encoding of events and snapshots (compact, transcoding), store URLs and connections (store,
store_urls, pgconnect, pgbinary), what the ledger writes beside the library's tables in the same transaction
(positions, position_log, claim_index, ledger_time, identity), the hash of its tamper-evident chains (chain),
and batched reads of stored histories (originators). The domain (`ledger`'s own modules) never imports this
package; the application service (`ledger.application`) wires the two together.
"""
