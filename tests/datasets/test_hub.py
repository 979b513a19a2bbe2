"""The hub path with the download faked (no network here; the fake stands for `datasets.load_dataset` only): each hub
id gets the config it has (derek-thomas/ScienceQA has only the default one), a missing lmms-lab id falls back to its
lmms-lab-encoder twin and back, and a relative path that is neither a folder nor on the hub says both."""

from __future__ import annotations

import datasets
import pytest

from sn_store.datasets import load_dataset
from sn_store.errors import SnError


class FakeHub:
    """`datasets.load_dataset` over in-memory rows {(hub id, config, split): rows}; records every call."""

    def __init__(self, tables: dict):
        self.tables, self.calls = tables, []

    def __call__(self, source, name=None, split=None, revision=None):
        self.calls.append((source, name, split))
        if not any(key[0] == source for key in self.tables):
            raise datasets.exceptions.DatasetNotFoundError(f"Dataset '{source}' doesn't exist on the Hub")
        if (source, name, split) not in self.tables:
            raise ValueError(f"Unknown split {split!r} of config {name!r}")
        return datasets.Dataset.from_list(self.tables[source, name, split]).cast_column("image", datasets.Image())


@pytest.fixture
def hub(monkeypatch):
    def install(tables):
        fake = FakeHub(tables)
        monkeypatch.setattr(datasets, "load_dataset", fake)
        return fake

    return install


def science_tables(bench, hub_id, config):
    key = "scienceqa_derek" if config is None else "scienceqa"
    return {(hub_id, config, split): rows for split, rows in bench.data[key].items()}


@pytest.mark.parametrize("hub_id,config,skipped", [("derek-thomas/ScienceQA", None, 10),
                                                   ("lmms-lab/ScienceQA", "ScienceQA-IMG", 0),
                                                   ("lmms-lab-encoder/ScienceQA", "ScienceQA-IMG", 0)])
def test_scienceqa_asks_each_hub_id_for_the_config_it_has(bench, hub, hub_id, config, skipped):
    fake = hub(science_tables(bench, hub_id, config))
    ds = load_dataset("scienceqa-img", source=hub_id)
    assert sorted(fake.calls) == [(hub_id, config, "test"), (hub_id, config, "validation")]
    assert ds.skipped == skipped
    local = load_dataset("scienceqa-img", source=str(bench.scienceqa_derek if config is None else bench.scienceqa))
    assert [(s.id, s.label, s.question) for s in ds.samples] == [(s.id, s.label, s.question) for s in local.samples]


@pytest.mark.parametrize("asked,twin", [("lmms-lab/POPE", "lmms-lab-encoder/POPE"),
                                        ("lmms-lab-encoder/POPE", "lmms-lab/POPE")])
def test_a_missing_id_falls_back_to_its_twin(bench, hub, asked, twin):
    fake = hub({(twin, "Full", "random"): bench.data["pope-random"]})
    ds = load_dataset("pope-random", source=asked)
    assert fake.calls == [(asked, "Full", "random"), (twin, "Full", "random")]
    assert {s.id for s in ds.samples} == {f"random-{r['question_id']}" for r in bench.data["pope-random"]}
    assert ds.spec.source == asked  # provenance keeps what the user named


def test_neither_twin_found_is_one_line_naming_both(hub):
    fake = hub({})
    with pytest.raises(SnError) as err:
        load_dataset("pope-random", source="lmms-lab/POPE")
    assert [c[0] for c in fake.calls] == ["lmms-lab/POPE", "lmms-lab-encoder/POPE"]
    text = str(err.value)
    assert "\n" not in text and "lmms-lab/POPE (nor its twin lmms-lab-encoder/POPE)" in text and "--source" in text


def test_an_id_without_a_twin_is_not_retried(hub):
    fake = hub({})
    with pytest.raises(SnError, match=r"cannot load someone/POPE \(split 'random' of config 'Full'\)"):
        load_dataset("pope-random", source="someone/POPE")
    assert len(fake.calls) == 1


def test_a_missing_relative_folder_says_it_is_no_folder_either(hub, tmp_path, monkeypatch):
    """`data/POPE` reads as a hub id too: the message says that no such local folder exists, and where it looked."""
    hub({})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SnError) as err:
        load_dataset("pope", source="data/POPE")
    text = str(err.value)
    assert "\n" not in text
    assert f"there is no local folder data/POPE (looked in {tmp_path.resolve()} and " in text
    (tmp_path / "data" / "POPE").mkdir(parents=True)  # now it is a folder: read as one, not from the hub
    with pytest.raises(SnError, match=r"no parquet shards of split 'test' under .*data/POPE"):
        load_dataset("pope", source="data/POPE")
