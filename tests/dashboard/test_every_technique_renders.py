"""Every registered technique renders from a canned answer generated from its own declaration: on its family's
generic page (which must show any technique of the family), and the sidebar lists the page that serves it.
Parametrized over the registry: a new technique is covered with no edit here."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from client.http import TechniqueInfo
from client.results import Result
from convlens import registry
from dashboard import navigation
from tests.dashboard import canned
from tests.dashboard.conftest import FakeClient, run_family

SPECS = list(registry.registry().values())
APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "streamlit_app.py")


def captions(at: object) -> list[str]:
    return [img.caption for element in at.get("image") for img in element.proto.imgs]  # type: ignore[attr-defined]


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_the_technique_renders_on_its_family_page_from_its_declaration(spec: registry.Spec) -> None:
    client = FakeClient()
    at = run_family(spec.family, spec.name, client)
    if spec.family == "synthesis":
        at.button(key=f"{spec.name}_run").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    info = TechniqueInfo.from_json(spec.describe())
    result = Result(client.answers[spec.name], info.outputs)
    shown = captions(at)
    for image in result.images():  # every image it answers, captioned by its declaration
        assert image.caption in shown, (image.key, image.caption, shown)
    headline = [s.caption for s in result.with_role("headline", "scalars")]
    assert [m.label for m in at.metric] == headline
    verdicts = [s for s in result.with_role("verdict", "scalars")]
    assert len(at.success) + len(at.warning) >= len(verdicts)
    assert len(at.get("plotly_chart")) >= len(list(result.present("series")))


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_the_sidebar_lists_the_page_that_serves_the_technique(spec: registry.Spec) -> None:
    groups = navigation.plan(FakeClient().techniques())
    serving = [e for entries in groups.values() for e in entries if spec.name in e.techniques]
    assert len(serving) == 1
    [entry] = serving
    assert entry.module == spec.page or (not spec.page and (entry.family == spec.family
                                                            or entry.module == navigation.FAMILY_PAGES[spec.family]))
    if entry.module:
        assert (navigation.PAGES_DIR / f"{entry.module}.py").is_file()


def test_the_sidebar_keeps_every_page_a_user_knows() -> None:
    groups = navigation.plan(FakeClient().techniques())
    titles = {group: [e.title for e in entries] for group, entries in groups.items()}
    assert list(titles)[0] == "Why this decision?" and titles["Why this decision?"][0] == "Attribution"
    assert [e for entries in groups.values() for e in entries if e.default] == [groups["Why this decision?"][0]]
    every = [t for group in titles.values() for t in group]
    for title in ("Faithfulness", "Activations", "Filters", "Classes and neurons", "Fooling", "Inversion",
                  "DeepDream", "Texture", "Style", "Fast style", "Datasets", "Embedding", "Neighbours",
                  "Top patches", "Models"):
        assert title in every, (title, titles)
    assert titles["Which models are there?"] == ["Models"]
    assert len(every) == len(set(every))


def test_a_renamed_output_fails_the_fake_not_production() -> None:
    """The fake client answers only declared keys: an answer holding a key the technique no longer declares
    fails in the test that builds it."""
    spec = registry.get("fooling")
    renamed = {d.name: "renamed_" + d.name for d in spec.declared.of("scalars") if not d.is_pattern}
    with pytest.raises(AssertionError, match="not declared"):
        canned.sections(spec.name, scalars={new: 1.0 for new in renamed.values()})


MODULES = sorted({e.module for entries in navigation.plan(FakeClient().techniques()).values() for e in entries
                  if e.module})


@pytest.mark.parametrize("module", MODULES)
def test_the_app_opens_every_special_page_from_the_sidebar(module: str) -> None:
    """The app builds its sidebar from the info API and each special page it lists opens without an error."""
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["client"] = FakeClient()
    at.run()
    at.switch_page(f"app_pages/{module}.py").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.header or at.subheader
