"""The deploy examples are safe as shipped: the store verified over TLS, metrics and the API on loopback only,
and every unit's settings taken from the reviewed config file."""

from __future__ import annotations

import re
import tomllib
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.cli_helpers import ROOT

DEPLOY = ROOT / "deploy"


def production_config() -> dict[str, Any]:
    return tomllib.loads((DEPLOY / "points-ledger.toml").read_text(encoding="utf-8"))


def test_the_production_config_verifies_the_database_and_keeps_metrics_on_loopback() -> None:
    config = production_config()
    query = parse_qs(urlsplit(config["store"]["url"]).query)
    assert query["sslmode"] == ["verify-full"] and query["sslrootcert"]
    assert config["metrics"]["address"] == "127.0.0.1"


def test_the_units_take_the_store_metrics_and_api_settings_from_the_config_file() -> None:
    units = sorted(DEPLOY.glob("*.service"))
    assert {unit.name for unit in units} >= {"points-ledger-consume.service", "points-ledger-api.service"}
    for unit in units:
        text = unit.read_text(encoding="utf-8")
        assert "Environment=LEDGER_CONFIG=/etc/points-ledger/points-ledger.toml" in text, unit.name
        for override in ("--store", "--metrics-address", "LEDGER_STORE=", "LEDGER_METRICS_ADDRESS=",
                         "--host", "--port", "LEDGER_API_HOST=", "LEDGER_API_PORT="):  # fmt: skip
            assert override not in text, (unit.name, override)


def test_the_api_listens_on_loopback_behind_a_proxy_and_its_unit_outwaits_the_drain() -> None:
    """The API speaks plain HTTP with keys in its headers: loopback, for a TLS proxy on the host. systemd's
    SIGKILL must come only after the server had its shutdown timeout to finish the requests in flight."""
    api = production_config()["api"]
    assert api["host"] == "127.0.0.1"
    unit = (DEPLOY / "points-ledger-api.service").read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=/opt/points-ledger/bin/points-ledger serve$", unit, re.MULTILINE)
    timeout = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert timeout is not None and int(timeout[1]) > api["shutdown_timeout_s"]
    assert re.search(r"^KillSignal=SIGTERM$", unit, re.MULTILINE)
