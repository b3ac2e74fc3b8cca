"""The on-disk cache of the parsed chip catalog (lab.devices.catalog_cache): the same catalog as
parsing the YAML, a new entry when the file changes, a damaged entry ignored and replaced."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lab.devices import catalog as catmod
from lab.devices import catalog_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "hwlab" / "catalog"


def _load_cached(p):
    """load_catalog's path through the cache, without its in-process cache."""
    return catalog_cache.load(p, catmod._load_catalog, Path(catmod.__file__), (
        catmod.Figure, catmod.Price, catmod.SupplyFlag, catmod.Accelerator, catmod.Unit, catmod.Memory,
        catmod.VideoPath, catmod.Video, catmod.ChipIdentity, catmod.Chip, catmod.Catalog))


def _copy(tmp_path):
    p = tmp_path / "chips.yaml"
    shutil.copy(catmod.DEFAULT_PATH, p)
    return str(p)


def test_cached_catalog_equals_the_parsed_one(tmp_path, cache):
    p = _copy(tmp_path)
    parsed = catmod._load_catalog(p)
    first = _load_cached(p)  # parses and writes the entry
    assert [f.name for f in cache.glob("*.json")] and first == parsed
    second = _load_cached(p)  # reads the entry
    assert second == parsed and second is not first
    assert second.get("rk1808").accelerator.tops == parsed.get("rk1808").accelerator.tops
    assert type(second.get("rk1808").domain) is tuple and second.path == p


def test_an_edited_catalog_is_parsed_again(tmp_path, cache):
    p = _copy(tmp_path)
    _load_cached(p)
    text = Path(p).read_text(encoding="utf-8").replace("name: Rockchip RK1808", "name: Rockchip RK1808 (edited)", 1)
    assert "(edited)" in text
    Path(p).write_text(text, encoding="utf-8")
    assert _load_cached(p).get("rk1808").name == "Rockchip RK1808 (edited)"
    assert len(list(cache.glob("*.json"))) == 2


def test_a_damaged_entry_is_ignored_and_replaced(tmp_path, cache):
    p = _copy(tmp_path)
    parsed = catmod._load_catalog(p)
    _load_cached(p)
    (entry,) = cache.glob("*.json")
    for damage in ("{not json", "0" * 64 + "\n{}", entry.read_text()[:-9]):
        entry.write_text(damage)
        assert _load_cached(p) == parsed
        assert entry.read_text() != damage  # rewritten from the YAML


def test_an_unwritable_cache_is_not_an_error(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # a file where the folder would be
    p = _copy(tmp_path)
    assert _load_cached(p) == catmod._load_catalog(p)
    assert catalog_cache.read("0" * 64, {}) is None
