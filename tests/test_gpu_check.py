"""scripts/gpu_check.py kept alive on a CPU: `--tiny` runs every part's code at small
sizes and records every number; a mismatch or an error fails loudly with its cause named, after
the other parts ran; without a GPU and without --tiny the script says so in one line."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    """The script as a module, under the name its training callback is instantiated by
    (`+callbacks.gpu_check_timer._target_=gpu_check.EpochTimer`)."""
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


@pytest.fixture(scope="module")
def tiny(gpu_check, cache_dir, tmp_path_factory):
    """One --tiny run in this process: its exit status, its JSON and what it printed."""
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = gpu_check.main(["--tiny", "--out", str(out)])
    return code, json.loads(out.read_text()), printed.getvalue()


def _positive(value) -> bool:
    return isinstance(value, int | float) and value > 0


def test_tiny_run_records_every_part_with_numbers(gpu_check, tiny):
    code, report, printed = tiny
    assert code == 0, report.get("failures")
    assert report["status"] == "passed" and report["failures"] == []
    assert report["mode"] == "tiny (CPU)"
    parts = report["parts"]
    assert list(parts) == list(gpu_check.PARTS)
    for name, part in parts.items():
        assert part["status"] in ("passed", "skipped"), (name, part.get("cause"))
        assert part["seconds"] >= 0

    # the targets and tolerances, as stated at the top of the script
    targets = report["targets"]
    assert targets["pathlab_vs_limit_28px"] == 0.9 and targets["epoch_train_s"] == 5.0
    assert 200 < targets["epoch_tflop"] < 260 and targets["budget_s"] == 480
    assert report["tolerances"] == gpu_check.AGREEMENT
    env = report["environment"]
    for key in ("device", "device_name", "driver", "torch", "cuda", "cudnn", "machine", "tf32"):
        assert key in env
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    assert report["budget"]["wall_s"] > 0 and report["budget"]["judged"] is False

    # bench: pathlab.bench's measurements, every one of them images/s > 0
    for name in ("bench_28", "bench_224"):
        bench = parts[name]
        assert set(bench["results"]) == set(gpu_check.BENCH_MEASURES)
        for result in bench["results"].values():
            assert _positive(result["images_per_s"]) and result["min"] > 0
        assert all(_positive(v) for v in bench["ratios"].values())
        assert bench["precision"] and isinstance(bench["channels_last"], bool)
    assert parts["bench_28"]["batch"] == gpu_check.TINY_PLAN["batch_28"]
    compiled = parts["bench_28_compile"]
    assert compiled["compile"] is True and compiled["compile_backend"] == "aot_eager"
    assert _positive(compiled["results"]["limit"]["images_per_s"])
    assert _positive(compiled["results"]["pathlab"]["images_per_s"])
    assert _positive(compiled["compile_speedup_pathlab"])
    ratio = parts["bench_28"]["checks"][0]
    assert ratio["name"] == "pathlab_vs_limit_28px" and ratio["judged"] is False  # a CPU

    # epoch: every epoch timed, the first one (warm-up) too
    epoch = parts["epoch"]
    epochs = epoch["epochs"]
    assert [e["epoch"] for e in epochs] == list(range(1, gpu_check.TINY_PLAN["epochs"] + 1))
    for e in epochs:
        assert _positive(e["train_s"]) and _positive(e["images_per_s"])
        assert e["epoch_s"] >= e["train_s"]
        assert e["images"] == 400 // 32 * 32  # whole batches (the last partial one is dropped)
    assert epoch["peak_gpu_mb"] is None  # no GPU here
    assert Path(epoch["checkpoint"]).name == "best.ckpt"
    assert epoch["checks"][0]["name"] == "epoch_train_s"

    # inference: GPU (here a CPU stand-in) and CPU predictions of one checkpoint agree
    inference = parts["inference"]
    assert set(inference["agreement"]) == {
        "eval_gpu_fp32_vs_cpu",
        "eval_gpu_default_vs_cpu",
        "predict_gpu_vs_eval_cpu",
    }
    for result in inference["agreement"].values():
        assert result["images"] == 64
        assert result["flipped_labels"] == 0 and result["flipped_share"] == 0.0
        assert 0 <= result["prob_max_abs_diff"] <= gpu_check.AGREEMENT["fp32_prob_max_abs"]
        assert all(c["met"] and c["judged"] for c in result["checks"])
    throughput = inference["throughput"]
    assert _positive(throughput["predict_images_per_s"]) and throughput["predict_images"] == 400
    assert _positive(throughput["embed_images_per_s"]) and throughput["embed_images"] == 528
    assert _positive(throughput["eval_gpu_images_per_s_wall"])

    slide = parts["slide"]
    if importlib.util.find_spec("pathlab.slide") is None:
        assert slide["status"] == "skipped" and "no slide entry point" in slide["cause"]

    assert "gpu_check on" in printed and "passed" in printed


def test_mismatching_predictions_fail_with_the_cause_named(gpu_check):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(9), size=1000)
    same = gpu_check.agreement(probs, probs + 1e-5, 1e-3)
    assert all(c["met"] for c in same["checks"]) and same["flipped_labels"] == 0
    flipped = probs.copy()
    flipped[:5] = flipped[:5, ::-1]  # 5 of 1000 images change their label: 0.5% > 0.1%
    result = gpu_check.agreement(flipped, probs, 1e-3)
    assert result["flipped_labels"] == 5 and result["flipped_share"] == 0.005
    missed = gpu_check.failed_checks(result["checks"])
    assert any(m.startswith("prob_max_abs_diff") for m in missed)
    assert any(m.startswith("flipped_share") for m in missed)
    shapes = gpu_check.agreement(probs[:10], probs, 1e-3)
    assert gpu_check.failed_checks(shapes["checks"])  # other images: a mismatch too

    part = gpu_check.run_part("inference", lambda ctx: {"checks": result["checks"]}, None)
    assert part["status"] == "failed"
    assert part["cause"].startswith("inference: ") and "flipped_share = 0.005" in part["cause"]


def test_a_failed_part_fails_the_check_after_the_others_ran(gpu_check, tmp_path, monkeypatch):
    """A negative tolerance makes identical predictions a mismatch; an exception in another part
    is recorded with its cause; the parts after them still run; the exit status is 1."""
    monkeypatch.setitem(gpu_check.AGREEMENT, "fp32_prob_max_abs", -1.0)
    probs = np.full((20, 9), 1 / 9)

    def inference(ctx):
        a = gpu_check.agreement(probs, probs, gpu_check.AGREEMENT["fp32_prob_max_abs"])
        return {"agreement": {"eval_gpu_fp32_vs_cpu": a}, "checks": a["checks"]}

    def broken(ctx):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    parts = {"inference": inference, "bench_28": broken, "slide": gpu_check.part_slide}
    monkeypatch.setattr(gpu_check, "PARTS", parts)
    out = tmp_path / "check.json"
    code = gpu_check.main(["--tiny", "--out", str(out), "--parts", "inference,bench_28,slide"])
    assert code == 1
    report = json.loads(out.read_text())
    assert report["status"] == "failed"
    got = report["parts"]
    assert got["inference"]["status"] == "failed"
    assert "prob_max_abs_diff = 0, target <= -1.0" in got["inference"]["cause"]
    assert got["bench_28"]["status"] == "error"
    assert got["bench_28"]["cause"] == (
        "bench_28: RuntimeError: CUDA error: an illegal memory access was encountered"
    )
    assert got["slide"]["status"] in ("skipped", "passed")  # ran after both
    assert report["failures"] == [got["inference"]["cause"], got["bench_28"]["cause"]]


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_without_a_gpu_it_asks_for_tiny(gpu_check, tmp_path, capsys):
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [gpu_check.NO_GPU] and not (tmp_path / "x.json").exists()
