"""One consume run, wired: clients (waiting for the broker), dead letters, the loop, a clean close."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from consumers.catch_up import catch_up_target
from consumers.kafka_clients import connect, new_consumer, new_producer
from consumers.kafka_consumer import ConsumeOptions, LedgerConsumer
from consumers.kafka_deadletters import KafkaDeadLetters
from consumers.kafka_settings import KafkaSettings
from consumers.metrics import ConsumerMetrics
from ledger.application import LedgerApplication
from ledger.outcomes import Tally


def consume(
    app: LedgerApplication,
    settings: KafkaSettings,
    options: ConsumeOptions,
    dead_letter_topics: dict[str, str],
    stop: threading.Event,
    *,
    metrics: ConsumerMetrics | None = None,
    warn: Callable[[str], None],
    on_progress: Callable[[Tally], None] | None = None,
    on_start: Callable[[LedgerConsumer], None] | None = None,
) -> Tally:
    """Consume `options.topics` into `app` until stopped (or idle); return what happened."""
    consumer = connect(lambda: new_consumer(settings, options.group, options.batch_size),
                       settings.bootstrap_servers, warn, stop)  # fmt: skip
    if consumer is None:
        return Tally()
    producer = connect(lambda: new_producer(settings), settings.bootstrap_servers, warn, stop)
    if producer is None:
        consumer.close(autocommit=False)
        return Tally()
    dead_letters = KafkaDeadLetters(producer, dead_letter_topics)
    ledger_consumer = LedgerConsumer(
        app, consumer, dead_letters, options, metrics=metrics or ConsumerMetrics(), warn=warn
    )
    if on_start is not None:
        on_start(ledger_consumer)
    try:
        catch_up = catch_up_target(settings, options.topics) if options.until_caught_up else None
        tally = ledger_consumer.run(stop, on_progress, catch_up)
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            ledger_consumer.close()
        raise
    ledger_consumer.close()
    return tally
