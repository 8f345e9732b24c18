"""The deploy examples are safe as shipped: the store verified over TLS, metrics on loopback only."""

from __future__ import annotations

import tomllib
from urllib.parse import parse_qs, urlsplit

from tests.cli_helpers import ROOT

DEPLOY = ROOT / "deploy"


def test_the_production_config_verifies_the_database_and_keeps_metrics_on_loopback() -> None:
    config = tomllib.loads((DEPLOY / "points-ledger.toml").read_text(encoding="utf-8"))
    query = parse_qs(urlsplit(config["store"]["url"]).query)
    assert query["sslmode"] == ["verify-full"] and query["sslrootcert"]
    assert config["metrics"]["address"] == "127.0.0.1"


def test_the_units_take_the_store_and_metrics_settings_from_the_config_file() -> None:
    for unit in DEPLOY.glob("*.service"):
        text = unit.read_text(encoding="utf-8")
        assert "Environment=LEDGER_CONFIG=/etc/points-ledger/points-ledger.toml" in text, unit.name
        for override in ("--store", "--metrics-address", "LEDGER_STORE=", "LEDGER_METRICS_ADDRESS="):
            assert override not in text, (unit.name, override)
