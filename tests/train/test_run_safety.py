"""A run directory is never replaced unless asked, a resumed run may be given more epochs,
and `jaxviz train` warns about data that fits the run badly (Python API and CLI)."""
import json
import re

import numpy as np
import pytest

from jaxviz import cli, train
from tests.helpers.state_models import bn_net, toy_data

CONFIG = train.TrainConfig(model="tests.helpers.state_models:bn_net", epochs=1, batch_size=16, shift=0)
MODEL = "tests.helpers.state_models:bn_net"  # 8x8x3 -> 3 classes


@pytest.fixture(scope="module")
def data():
    return toy_data(n_train=64, n_val=32)


def _npz(path, n: int = 40, classes: int = 3):
    """An .npz of n toy images whose labels cover `classes` of the model's 3 classes."""
    d = toy_data(n_train=n, n_val=0)
    np.savez(path, x=d.x_train, y=np.minimum(d.y_train, classes - 1))
    return f"npz:{path}"


def test_fit_refuses_to_replace_an_existing_run(data, tmp_path):
    """Training again into a run directory silently deleted its checkpoints; now it is
    refused, naming the directory and both ways on, and the old run is kept."""
    train.fit(CONFIG, data, tmp_path, quiet=True, model=bn_net(0))
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match=rf"{tmp_path}.*already holds a run.*"
                                              r"--overwrite.*--resume"):
        train.fit(CONFIG, data, tmp_path, quiet=True, model=bn_net(1))
    assert train.CheckpointStore(tmp_path).latest() == 1
    assert (tmp_path / "metrics.jsonl").read_text() == before
    replaced = train.fit(CONFIG, data, tmp_path, quiet=True, model=bn_net(1), overwrite=True)
    assert replaced.resumed_from is None and train.CheckpointStore(tmp_path).latest() == 1


def test_resume_continues_to_more_epochs(data, tmp_path):
    """`--resume` with more epochs was refused as a different config; now it continues
    from the last checkpoint. Fewer epochs than done, or another setting, are refused."""
    train.fit(CONFIG, data, tmp_path, quiet=True, model=bn_net(0))
    more = CONFIG.__class__(**{**CONFIG.to_dict(), "epochs": 2})
    result = train.fit(more, data, tmp_path, resume=True, quiet=True, model=bn_net(0))
    assert result.resumed_from == 1 and [m["epoch"] for m in result.metrics] == [1, 2]
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 2
    with pytest.raises(ValueError, match="already trained 2 epochs; epochs must be at least 2"):
        train.fit(CONFIG, data, tmp_path, resume=True, quiet=True, model=bn_net(0))
    other = CONFIG.__class__(**{**more.to_dict(), "batch_size": 8})
    with pytest.raises(ValueError, match=r"different config.*'batch_size': \(16, 8\)"):
        train.fit(other, data, tmp_path, resume=True, quiet=True, model=bn_net(0))


def test_cli_train_keeps_an_existing_run_unless_told(tmp_path, capsys):
    """`jaxviz train --out DIR` on an existing run deleted its checkpoints without a word;
    now it fails with one line and leaves DIR as it was; --overwrite replaces it and
    `--resume --epochs N` continues it to N epochs."""
    src, out = _npz(tmp_path / "d.npz"), tmp_path / "run"
    args = ["train", "--model", MODEL, "--data", src, "--batch-size", "16", "--out", str(out),
            "--quiet"]
    assert cli.main([*args, "--epochs", "1"]) == 0
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert cli.main([*args, "--epochs", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"'{out}' already holds a run" in err and "--overwrite" in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    assert cli.main([*args, "--epochs", "2", "--resume"]) == 0
    assert train.CheckpointStore(out).latest() == 2
    assert cli.main([*args, "--epochs", "1", "--overwrite"]) == 0
    assert train.CheckpointStore(out).latest() == 1


def test_fit_warns_about_a_batch_too_big_for_the_data(data):
    """A batch of 128 on 48 images trained one step per epoch with no word; a batch that
    left more than 10% of the images out of every epoch was not mentioned either."""
    few = data._replace(x_train=data.x_train[:24], y_train=data.y_train[:24])
    with pytest.warns(UserWarning) as caught:
        train.fit(CONFIG, few, quiet=True, model=bn_net(0))  # batch 16
    text = " ".join(str(w.message) for w in caught)
    assert "batch size 16 is more than half of the 24 training images" in text
    assert "8 of the 24 training images (33%) are left out of every epoch" in text
    assert train.checks.batch_warnings(48, 18)[0].startswith("12 of the 48 training images (25%)")
    assert train.checks.batch_warnings(48, 16) == []


def test_cli_train_warns_about_fewer_classes_and_small_batches(tmp_path, capsys):
    """A 3-class model trained on 2-class data, and the default batch on 40 images, gave
    no warning; now both print on the CLI's stderr."""
    src = _npz(tmp_path / "two.npz", n=20, classes=2)
    assert cli.main(["train", "--model", MODEL, "--data", src, "--epochs", "1",
                     "--batch-size", "16", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "the data has 2 class(es) (labels [0, 1]) but the model outputs 3 logits" in err
    assert "batch size 16 is more than half of the 16 training images" in err


def test_cli_val_fraction_sets_and_keeps_the_split(tmp_path, capsys):
    """`jaxviz train` had no --val-fraction; the fraction given is used, recorded and read
    back by the analysis commands, and refused for data with a fixed split."""
    src, out = _npz(tmp_path / "d.npz", n=40), tmp_path / "run"
    assert cli.main(["train", "--model", MODEL, "--data", src, "--epochs", "1",
                     "--batch-size", "16", "--val-fraction", "0.5", "--out", str(out)]) == 0
    n_val = int(re.search(r"(\d+) validation images", capsys.readouterr().out)[1])
    assert 17 <= n_val <= 23  # half of each class, rounded per class
    assert json.loads((out / "data.json").read_text())["val_fraction"] == 0.5
    args = cli.build_parser().parse_args(["summary", "--checkpoint", str(out), "--quiet"])
    assert len(cli._loaded(args)[3]) == n_val
    assert cli.main(["train", "--epochs", "1", "--val-fraction", "0.3",
                     "--out", str(tmp_path / "b")]) == 1
    assert "--data bundled has a fixed validation split" in capsys.readouterr().err
