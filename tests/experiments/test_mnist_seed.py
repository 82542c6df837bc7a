"""The main job end to end at a small size: every promised file, a report whose images resolve."""
import html.parser
import json

import matplotlib.pyplot as plt
import numpy as np

from experiments import mnist_seed

PROMISED = ["summary.txt", "architecture.png", "architecture.svg", "filters_conv1.png",
            "filters_conv2.png", "feature_maps_conv1.png", "feature_maps_conv2.png",
            "maximize_classes.png", "maximize_progress.png", "maximize_tv.png",
            "maximize_conv1.png", "maximize_conv2.png", "occlusion.png", "occlusion_seed.png",
            "attribution_comparison.png", "attribution_sanity.png", "evaluate_curves.png",
            "evaluate_table.png", "metrics.json",
            "report.html", "report.md", "config.json", "metrics.jsonl"]


class _Images(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.src = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.src.append(dict(attrs)["src"])


def test_main_job_writes_everything_and_reuses_its_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    mnist_seed.main(["--small", "--out", str(out), "--quiet"])
    first = capsys.readouterr().out
    assert "[train]" in first and "reusing" not in first
    for name in PROMISED:
        assert (out / name).exists() and (out / name).stat().st_size > 0, name
    for png in out.glob("*.png"):
        img = plt.imread(png)
        assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 8, png.name
    parser = _Images()
    parser.feed((out / "report.html").read_text())
    assert len(parser.src) >= 10
    for src in parser.src:
        assert not src.startswith(("http:", "https:", "/")), src  # nothing fetched, all relative
        assert (out / src).is_file(), src
    md = (out / "report.md").read_text()  # the seed recipe on MNIST: there, MNIST is right
    assert md.startswith("# jaxviz: inside the Keras recipe's MNIST CNN")
    assert "the bundled MNIST digits" in md and "settings: ``" not in md
    metrics = json.loads((out / "metrics.json").read_text())
    assert isinstance(metrics["warnings"], dict)
    assert set(metrics["stage_seconds"]) >= {"architecture", "maximize", "occlusion", "attribution",
                                             "evaluate"}
    assert set(metrics["evaluate"]["cells"]["saliency"]) == {"deletion", "insertion", "sparseness"}
    assert metrics["attribution"]["ig_delta_rel_max"] < 0.05
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files

    # A second run reuses the checkpoint (same config) instead of training again.
    config = json.loads((out / "config.json").read_text())
    from jaxviz import data, train  # noqa: PLC0415
    model, seconds = mnist_seed.load_or_train(train.TrainConfig.from_dict(config),
                                              data.load_bundled(), out)
    assert seconds is None and "reusing the checkpoint" in capsys.readouterr().out
