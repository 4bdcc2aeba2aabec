"""Issue 14: the CUDA code paths (mixed precision in both dtypes, GradScaler, channels_last, EMA, evaluation
under autocast, a checkpoint that moves between GPU and CPU) on a real GPU.

Every test here needs CUDA and is skipped without it; benchmarks/gpu_check.sh runs this file on a GPU machine.
The one exception is the evaluation test's CPU variant (CPU autocast in bf16), which keeps the evaluation path's
calls exercised where CI has no GPU.
"""
import pandas as pd
import pytest
import timm
import torch
import yaml

import dataset
from leafdisease.training import engine
from leafdisease.utils import runtime
from tiny_run import load_checkpoint, run_stage

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (see benchmarks/gpu_check.sh)")


def resolved(output):
    return yaml.safe_load((output / "config.yaml").read_text())["resolved"]


def initial_weights():
    """test_efficientnet as train.py creates it from scratch with --seed 0 (seeded before the model is built)."""
    torch.manual_seed(0)
    return timm.create_model("test_efficientnet", num_classes=4, drop_rate=0.2).state_dict()


def floating(state_dict):
    return {key: value for key, value in state_dict.items() if value.dtype.is_floating_point}


@pytest.fixture(scope="module")
def fp32_run(tiny_cleaned, tmp_path_factory):
    """The reference: the same run on the GPU without mixed precision."""
    return run_stage(tiny_cleaned, tmp_path_factory.mktemp("cuda") / "fp32", "--device", "cuda", "--amp", "off",
                     "--epochs", "2")


@requires_cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_full_stage_learns_like_fp32(tiny_cleaned, tmp_path, fp32_run, amp):
    output = run_stage(tiny_cleaned, tmp_path / amp, "--device", "cuda", "--amp", amp, "--channels-last", "on",
                       "--epochs", "2")
    config = resolved(output)
    assert config["amp"] == {"bf16": "torch.bfloat16", "fp16": "torch.float16"}[amp]
    assert config["channels_last"] is True and config["device"].startswith("cuda")
    last = load_checkpoint(output / "last.pth")
    weights = floating(last["state_dict"])
    assert all(torch.isfinite(value).all() for value in weights.values())
    start = initial_weights()
    changed = [key for key, value in weights.items() if not torch.equal(value, start[key])]
    assert any(key.startswith("conv_stem") for key in changed), "the backbone never stepped"
    # fp16 needs the GradScaler (its state is saved for --resume); bf16 has fp32's range and must not use it.
    if amp == "fp16":
        assert last["scaler"]["scale"] > 0 and last["scaler"]["growth_interval"] > 0
    else:
        assert last["scaler"] == {}
    # Same seed, same data order and augmentation: the first epoch's loss differs only by rounding.
    history, reference = pd.read_csv(output / "history.csv"), pd.read_csv(fp32_run / "history.csv")
    assert history["train_loss"].iloc[0] == pytest.approx(reference["train_loss"].iloc[0], rel=0.05)
    assert history[["train_loss", "val_loss"]].notna().all().all()


@requires_cuda
def test_head_stage_under_autocast_changes_only_the_classifier(tiny_cleaned, tmp_path):
    output = run_stage(tiny_cleaned, tmp_path / "head", "--device", "cuda", "--amp", "bf16", "--stage", "head",
                       "--epochs", "2", "--lr", "1e-2")
    trained, start = load_checkpoint(output / "last.pth")["state_dict"], initial_weights()
    changed = [key for key in start if not torch.equal(start[key], trained[key])]
    assert changed and all(key.startswith("classifier.") for key in changed), changed


@requires_cuda
def test_ema_weights_are_kept_and_evaluated_on_the_gpu(tiny_cleaned, tmp_path):
    output = run_stage(tiny_cleaned, tmp_path / "ema", "--device", "cuda", "--amp", "bf16", "--epochs", "2",
                       "--ema-decay", "0.5")
    last, best = load_checkpoint(output / "last.pth"), load_checkpoint(output / "best.pth")
    # checkpoint.py (issue 12) renames the key to timm's state_dict_ema; either is a saved EMA.
    model, ema = floating(last["state_dict"]), floating(last.get("state_dict_ema", last.get("ema_state_dict")))
    assert ema.keys() == model.keys()
    assert all(torch.isfinite(value).all() for value in ema.values())
    assert any(not torch.equal(ema[key], model[key]) for key in ema), "EMA is a copy of the model"
    assert any(not torch.equal(ema[key], value) for key, value in floating(initial_weights()).items())
    if best["epoch"] == last["epoch"]:  # best.pth holds the evaluated weights, which are the EMA's
        assert all(torch.equal(best["state_dict"][key], ema[key]) for key in ema)


@pytest.mark.parametrize("device, dtype", [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=requires_cuda),
    pytest.param("cuda", torch.float16, id="cuda-fp16", marks=requires_cuda),
])
def test_evaluation_under_autocast_matches_fp32(tiny_cleaned, device, dtype):
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", num_classes=4)
    with torch.no_grad():  # spread the logits, so a rounding error shows against their scale
        model.get_classifier().weight.mul_(20)
    data_config = timm.data.resolve_data_config(model=model)
    metadata = dataset.load_metadata(tiny_cleaned)
    transform = dataset.build_transform("eval", 32, crop_pct=data_config["crop_pct"])
    loader = torch.utils.data.DataLoader(dataset.LeafDataset(metadata.val["path"], metadata.val["label"], transform),
                                         batch_size=5)
    reference, reference_targets = engine.evaluate(model, loader, dataset.ModelInput.for_config(data_config, torch.device("cpu")),
                                                   None, world_size=1)
    channels_last = device == "cuda"
    on_device = model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    on_device_input = dataset.ModelInput.for_config(data_config, torch.device(device), channels_last)
    logits, targets = engine.evaluate(on_device, loader, on_device_input, dtype, world_size=1)
    assert logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert torch.equal(targets, reference_targets) and logits.shape == reference.shape == (len(metadata.val), 4)
    scale = reference.abs().max().item()
    assert scale > 1.0
    assert (logits - reference).abs().max().item() <= 0.05 * scale


@requires_cuda
def test_checkpoint_written_on_gpu_resumes_on_cpu_and_back(tiny_cleaned, tmp_path):
    output = tmp_path / "moving"
    common = ["--amp", "fp16", "--ema-decay", "0.5", "--resume", "auto", "--warmup-epochs", "1"]
    run_stage(tiny_cleaned, output, "--device", "cuda", "--epochs", "1", *common)
    after_gpu = load_checkpoint(output / "last.pth")
    run_stage(tiny_cleaned, output, "--device", "cpu", "--epochs", "2", *common)
    after_cpu = load_checkpoint(output / "last.pth")
    assert resolved(output)["device"] == "cpu"
    run_stage(tiny_cleaned, output, "--device", "cuda", "--epochs", "3", *common)
    after_return = load_checkpoint(output / "last.pth")
    assert resolved(output)["device"].startswith("cuda")

    history = pd.read_csv(output / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history[["train_loss", "val_loss", "lr"]].notna().all().all()
    assert after_return["global_step"] == 3 * after_gpu["global_step"]
    for earlier, later in ((after_gpu, after_cpu), (after_cpu, after_return)):
        assert any(not torch.equal(earlier["state_dict"][key], value)
                   for key, value in floating(later["state_dict"]).items()), "an epoch trained nothing"
    # Every tensor of the final checkpoint loads on the CPU (nothing pinned to a CUDA device).
    model = timm.create_model("test_efficientnet", num_classes=4)
    model.load_state_dict(after_return["state_dict"])
    assert after_return["scaler"]["scale"] > 0  # fp16 on the GPU again: the GradScaler is back in use


def test_checkpoint_without_fp16_resumes_into_an_fp16_run(tiny_cleaned, tmp_path, monkeypatch):
    """A last.pth written on a CPU or in bf16 holds an empty GradScaler state; an fp16 run resuming from it (on
    a GPU without bf16, or with --amp fp16) must start a fresh scaler rather than fail. Run on the CPU by letting
    train.py pick fp16 there (CPU autocast and GradScaler accept it)."""
    output = tmp_path / "to_fp16"
    run_stage(tiny_cleaned, output, "--epochs", "1")
    last = load_checkpoint(output / "last.pth")
    assert last["scaler"] == {}
    last["args"]["epochs"] = 2  # as if a 2-epoch run had stopped after its first epoch
    torch.save(last, output / "last.pth")
    monkeypatch.setattr(runtime, "amp_dtype", lambda amp_arg, device: torch.float16)
    run_stage(tiny_cleaned, output, "--epochs", "2", "--resume", "auto")
    last = load_checkpoint(output / "last.pth")
    assert [row["epoch"] for row in last["history"]] == [1, 2]
    assert last["scaler"]["scale"] > 0


def test_compile_option_compiles_in_place_and_keeps_checkpoint_keys(tiny_cleaned, tmp_path, monkeypatch):
    compiled = []
    original = torch.nn.Module.compile

    def compile_without_codegen(module, *args, **kwargs):  # the real torch.compile, minus minutes of C++ builds
        compiled.append(type(module).__name__)
        return original(module, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", compile_without_codegen)
    output = run_stage(tiny_cleaned, tmp_path / "compiled", "--epochs", "1", "--compile")
    assert compiled == ["EfficientNet"]
    model = timm.create_model("test_efficientnet", num_classes=4)
    model.load_state_dict(load_checkpoint(output / "last.pth")["state_dict"])  # no "_orig_mod." prefixes
    assert pd.read_csv(output / "history.csv")["train_loss"].notna().all()
