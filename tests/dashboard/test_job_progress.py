"""The Datasets and Faithfulness pages follow a long job's progress (the client polls it) instead of waiting on
one request that outlives the client's read timeout."""

from __future__ import annotations

from pathlib import Path

from convlens import registry
from tests.dashboard.conftest import FakeClient, run_page

PAGES = Path(__file__).resolve().parents[2] / "dashboard" / "app_pages"


def test_creating_a_dataset_follows_its_job() -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "datasets.py"), client)
    at.number_input(key="ds_n").set_value(100_000).run()
    at.button(key="ds_create").click().run()
    created = [c for c in client.calls if c["params"].get("action") == "builtin"]
    assert created and created[0]["on_job"] and not at.exception and not at.error
    assert client.datasets_on_server == ["shapes", "shapes10k"]


def test_faithfulness_follows_each_measurement_job() -> None:
    seen: list[str] = []

    class Recording(FakeClient):
        def corpus(self, *args, on_job=None, **kwargs):  # type: ignore[no-untyped-def]
            seen.append("with progress" if on_job is not None else "without")
            return super().corpus(*args, on_job=on_job, **kwargs)

    at = run_page(str(PAGES / "faithfulness.py"), Recording())
    assert not at.exception and not at.error and seen == ["with progress"] * len(registry.of_family("attribution"))


def test_a_second_session_reuses_the_measurement_without_replaying_the_first_sessions_progress() -> None:
    """Corpus answers are shared by every session of the dashboard process; the progress elements a measurement
    reported into belong to the session that ran it, so the second session gets the answer, not a replay."""
    client = FakeClient()
    first = run_page(str(PAGES / "faithfulness.py"), client)
    measured = len(client.calls)
    second = run_page(str(PAGES / "faithfulness.py"), client)
    assert not first.exception and not second.exception, second.exception
    assert measured == len(registry.of_family("attribution")) and len(client.calls) == measured
    assert len(second.get("plotly_chart")) == len(first.get("plotly_chart")) > 0
