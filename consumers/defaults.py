"""Defaults and choices of ingestion that the CLI shows in its options' help: batch sizes, the Kafka
connection and topics.

Dependency-free: the CLI declares every command with these before it loads kafka-python or pydantic
(the modules of consumers/ that apply them import them from here).
"""

from typing import Literal, get_args

from ledger.limits import BATCH_SIZE_MAX

#: Messages per transaction unless told otherwise.
DEFAULT_BATCH_SIZE = 500
#: Messages per transaction of a replay (`consume --from-beginning`) unless a batch size is set: the most one
#: transaction may hold (ledger.limits.BATCH_SIZE_MAX), as a replay usually fills a store of its own.
REPLAY_BATCH_SIZE = BATCH_SIZE_MAX
#: At most this many partitions' batches are asked for in one Kafka poll (a bound on the records held in memory).
PARTITIONS_PER_POLL_MAX = 8
#: Corrections per transaction, unless told otherwise.
CORRECT_BATCH = 500

DEFAULT_TOPIC = "loyalty.transactions"
DEFAULT_GROUP = "points-ledger"
DEFAULT_BOOTSTRAP_SERVERS = "127.0.0.1:9092"
#: Kafka's `security.protocol` values.
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
#: SASL mechanisms we support (kafka-python's names).
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
#: Producer compression codecs; "none" sends uncompressed batches.
Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
#: What a consumer reads of transactional producers' records: only committed transactions' (the default), or
#: every record, aborted transactions' included.
IsolationLevel = Literal["read_committed", "read_uncommitted"]
DEFAULT_ISOLATION_LEVEL: IsolationLevel = "read_committed"
SECURITY_PROTOCOLS: tuple[str, ...] = get_args(SecurityProtocol)
SASL_MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)
COMPRESSION_CODECS: tuple[str, ...] = get_args(Compression)
ISOLATION_LEVELS: tuple[str, ...] = get_args(IsolationLevel)
