"""The Datasets and Models pages check a name over its whole length (issue 26 §4): a trailing newline, a NUL or a
look-alike letter keeps the button disabled and says why, before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dashboard.conftest import FakeClient, run_page

PAGES = Path(__file__).resolve().parents[2] / "dashboard" / "app_pages"
DISGUISED = ["shapes2\n", "sh\0apes2", "sh\u0430pes2", "shapes\uff12"]


@pytest.mark.parametrize("name", DISGUISED, ids=repr)
def test_the_datasets_page_refuses_a_disguised_name(name: str) -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "datasets.py"), client)
    at.text_input(key="ds_name").set_value(name).run()
    assert at.button(key="ds_create").disabled and at.warning
    at.text_input(key="ds_name").set_value("shapes2").run()
    assert not at.button(key="ds_create").disabled


@pytest.mark.parametrize("name", DISGUISED, ids=repr)
def test_the_models_page_refuses_a_disguised_name(name: str) -> None:
    client = FakeClient()
    at = run_page(str(PAGES / "models.py"), client)
    at.text_input(key="mdl_name").set_value(name).run()
    assert "The name must be" in " ".join(w.value for w in at.warning)
