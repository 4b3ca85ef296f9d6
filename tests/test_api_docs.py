"""docs/api.md is what docs/make_api.py generates from the code: a test fails when a public name,
a signature or a first docstring line changed without the page."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_api_page_is_up_to_date():
    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    make_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_api)
    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert page == make_api.render(), "docs/api.md is stale: run `python docs/make_api.py`"


def test_the_page_lists_every_public_name():
    import cskd
    from cskd import analysis

    page = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for module in (cskd, analysis):
        for name in module.__all__:
            assert f"`{module.__name__}.{name}" in page, name
