"""Timings as ratios measured in one run, with achieved GFLOP/s against this machine's peak.

Command:  python -m experiments.bench [--quick] [--json PATH] [--only NAME,...] [--peers]
          (`python -m experiments.benchmark` is the same command;
          `python -m experiments.bench.compare BEFORE.json AFTER.json` puts two runs side by side)
Time:     about 3-6 minutes on a 2-core CPU (--quick: about a minute).
Result:   one table; the peak is the best of numpy's and jnp.dot's fp32 2048x2048 matmul rate
          (8192x8192 on an accelerator). A forward pass of the seed's CNN is ~23.98 MFLOP per
          image; a backward ~2x that.
"""
from __future__ import annotations

import argparse
import importlib

from experiments.bench import harness

# section -> "module:function" in experiments.bench; run by default in this order.
SECTIONS = {
    "train": "train:rows", "fastgrad": "fastgrad:rows", "maximize": "maximize:rows",
    "occlusion": "occlusion:rows", "attribution": "attribution:rows", "samplers": "samplers:rows",
    "sharding": "sharding:rows",
}
# Run only when asked: peers (Captum on the seed's methods), peers_methods (Captum on
# DeepLIFT/LRP/SHAP/samplers), peers_gradcam (pytorch-grad-cam on the CAM family),
# peers_layer (Captum's layer and neuron families) and
# quantus (the metric suite) need the peers extra (`--peers` runs all five); peers_lucent
# (Lucent on feature visualization) needs it too (`--only peers_lucent`);
# occlusion_memory spends a few minutes on a 224x224 model's peak memory
# (`--only occlusion_memory`); evaluate times every metric and the method x metric table
# on 256 digits (`--only evaluate`, minutes);
# targets times the 10 class maps of saliency and IG at once against 10 calls
# (`--only targets`, a few minutes); realistic runs every analysis on a 224x224
# ResNet-18 at batch 8, each in a fresh process (`--only realistic`, the better part of
# an hour).
OPT_IN = {"peers": "peers:rows", "peers_methods": "peers_methods:rows",
          "frameworks": "frameworks:rows",  # NNX vs Equinox vs Keras twins: docs/frameworks.md
          "peers_gradcam": "peers_gradcam:rows", "peers_layer": "peers_layer:rows",
          "quantus": "peers_quantus:rows",
          "peers_tcav": "peers_tcav:rows",
          "peers_lucent": "peers_lucent:rows", "targets": "targets:rows",
          "occlusion_memory": "occlusion:memory_rows",
          "evaluate": "evaluate:rows", "realistic": "realistic:rows"}

PEER_SECTIONS = ("peers", "peers_methods", "peers_gradcam", "peers_layer", "quantus", "peers_tcav")


def section_rows(name: str, quick: bool) -> list[dict]:
    """The rows of one section. Raises ModuleNotFoundError where its extra is missing."""
    where = {**SECTIONS, **OPT_IN}.get(name)
    if where is None:
        raise ValueError(f"unknown benchmark section {name!r}; sections: "
                         f"{', '.join([*SECTIONS, *OPT_IN])}")
    module, function = where.split(":")
    return getattr(importlib.import_module(f"experiments.bench.{module}"), function)(quick=quick)


def wanted_sections(only: str | None, peers: bool) -> list[str]:
    names = only.split(",") if only else list(SECTIONS)
    if peers:
        names += [n for n in PEER_SECTIONS if n not in names]
    unknown = [n for n in names if n not in SECTIONS and n not in OPT_IN]
    if unknown:
        raise ValueError(f"--only: unknown section(s) {unknown}; sections: "
                         f"{', '.join([*SECTIONS, *OPT_IN])}")
    return names


def run(sections: list[str], quick: bool, peak: dict) -> tuple[list[dict], list[str]]:
    """Every row of `sections`, printed as it comes -> (rows, names of failed sections)."""
    rows, failed = [], []
    for section in sections:
        try:
            section_out = section_rows(section, quick)
        except ModuleNotFoundError as err:
            print(f"## {section}: skipped ({err})", flush=True)
            continue
        except Exception as err:  # noqa: BLE001 -- one broken section must not lose the others' rows
            print(f"## {section}: FAILED ({type(err).__name__}: {err})", flush=True)
            failed.append(section)
            continue
        print(f"## {section}", flush=True)
        for r in section_out:
            rows.append(harness.with_peak(r, section, peak))
            print(harness.format_row(rows[-1]), flush=True)
    return rows, failed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller sizes")
    parser.add_argument("--json", default=None, metavar="PATH", help="write every row as JSON")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated sections of {[*SECTIONS, *OPT_IN]}")
    parser.add_argument("--peers", action="store_true",
                        help="also time PyTorch/Captum (needs `pip install -e .[peers]`)")
    args = parser.parse_args(argv)
    try:
        sections = wanted_sections(args.only, args.peers)
    except ValueError as err:
        parser.error(str(err))
    peak = harness.matmul_peak()
    print(harness.machine_line(peak), flush=True)
    rows, failed = run(sections, args.quick, peak)
    if args.json:
        harness.write_json(args.json, peak, rows)
        print(f"wrote {args.json}")
    if failed:
        raise SystemExit(f"sections failed: {', '.join(failed)}")
