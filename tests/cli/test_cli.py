import subprocess
import sys

import pytest

from jaxviz import cli


def test_help_shows_every_subcommand_and_defaults():
    out = subprocess.run([sys.executable, "-m", "jaxviz.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for sub in ("train", "summary", "filters", "features", "maximize", "occlusion", "attribute",
                "report"):
        assert sub in out
    out = subprocess.run([sys.executable, "-m", "jaxviz.cli", "occlusion", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--window" in out and "(default: 4)" in out and "--checkpoint" in out


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    """The Linen residual net, trained for one epoch through the CLI as a user would."""
    out = tmp_path_factory.mktemp("user_run")
    code = cli.main(["train", "--model", "tests.helpers.user_models:residual32", "--epochs", "1",
                     "--batch-size", "256", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_train_a_user_linen_model(user_run):
    assert (user_run / "config.json").exists() and (user_run / "metrics.jsonl").exists()
    assert (user_run / "checkpoints" / "1").is_dir()


def test_errors_are_one_line_and_nonzero(tmp_path, capsys, user_run):
    assert cli.main(["summary", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("jaxviz summary: error: no checkpoint") and "\n" not in err
    assert cli.main(["summary", "--checkpoint", str(user_run), "--model", "mnist_cnn",
                     "--out", str(tmp_path)]) == 1
    assert "holds model 'tests.helpers.user_models:residual32'" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["summary", "--checkpoint", str(user_run), "--out", str(blocker / "x")]) == 1
    assert "not writable" in capsys.readouterr().err
    assert cli.main(["train", "--model", "nowhere:thing", "--out", str(tmp_path / "t")]) == 1
    assert "cannot import" in capsys.readouterr().err
    # --checkpoint is optional only for a trained PATH.keras model: without either, one line
    assert cli.main(["attribute"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--checkpoint DIR is required" in err and "PATH.keras" in err and "\n" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        cli.main(["summary", "--checkpoint", str(tmp_path / "none"), "--debug"])


def test_parse_units():
    assert cli.parse_units("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(ValueError, match="--units"):
        cli.parse_units("a-b")


def test_every_analysis_subcommand_on_a_user_model(user_run, tmp_path, capsys):
    """Each subcommand through the entry point, on the Linen model trained above (32x32x3)."""
    common = ["--checkpoint", str(user_run), "--quiet"]
    expected = {
        "summary": ["architecture.png", "summary.txt"],
        "filters": ["filters_stem.png"],
        "features": ["feature_maps_stem.png"],
        "occlusion": ["occlusion.png", "occlusion_seed.png"],
        "attribute": ["attribution_grad_cam.png"],
        "maximize": ["maximize_logits_units.png"],
    }
    extra = {"occlusion": ["--images", "2", "--method", "incremental"], "attribute": ["--method", "grad_cam", "--images", "2"],
             "features": ["--images", "2"],
             "maximize": ["--layer", "logits", "--units", "0-2", "--steps", "4"]}
    for sub, files in expected.items():
        out = tmp_path / sub
        assert cli.main([sub, *common, "--out", str(out), *extra.get(sub, [])]) == 0, sub
        for name in files:
            assert (out / name).stat().st_size > 0, (sub, name, sorted(p.name for p in out.iterdir()))
    # An unknown method is a bad argument (exit 2), refused before loading, naming the choices.
    with pytest.raises(SystemExit) as exc:
        cli.main(["attribute", *common, "--out", str(tmp_path / "a"), "--method", "nope"])
    assert exc.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
