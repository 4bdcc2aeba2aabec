"""Issue 12: recipes declared once (recipes/*.yaml), read by train.py --config with flags overriding."""
import pandas as pd
import pytest
import torch
import yaml

import train
from leafdisease.training import recipe
from leafdisease.utils.errors import UserError
from tiny_run import TINY_ARGS


def test_a_recipe_sets_defaults_and_flags_override_it():
    args = train.parse_args(["--config", str(recipe.path_of("fixed_stage1")), "--epochs", "3"])
    assert (args.stage, args.epochs, args.lr, args.img_size, args.class_weights, args.augment, args.sampler) == \
        ("head", 3, 1e-3, 192, "sqrt", "strong", "sqrt")
    assert train.parse_args(["--config", str(recipe.path_of("fixed_stage2")), "--sampler", "none"]).sampler == "none"
    baseline = train.parse_args(["--config", str(recipe.path_of("baseline"))])
    assert (baseline.stage, baseline.lr, baseline.warmup_epochs, baseline.class_weights, baseline.augment) == \
        ("full", 1e-4, 0, "inverse", "weak")


def test_the_demo_profile_changes_each_recipe_its_own_way():
    stage2 = train.parse_args(["--config", str(recipe.path_of("fixed_stage2")),
                               "--profile", str(recipe.path_of("demo"))])
    baseline = train.parse_args(["--config", str(recipe.path_of("baseline")), "--profile", str(recipe.path_of("demo"))])
    demo = yaml.safe_load(open(recipe.path_of("demo")))
    assert (stage2.epochs, stage2.img_size, stage2.warmup_epochs) == \
        (demo["fixed_stage2"]["epochs"], demo["fixed_stage2"]["img_size"], demo["fixed_stage2"]["warmup_epochs"])
    assert (baseline.epochs, baseline.img_size) == (demo["baseline"]["epochs"], demo["baseline"]["img_size"])
    assert stage2.lr == 3e-4  # what the profile does not change comes from the recipe


def test_without_a_config_each_stage_takes_its_recipes_lr_and_warmup():
    head, full = train.parse_args(["--stage", "head"]), train.parse_args(["--stage", "full"])
    assert (head.lr, head.warmup_epochs) == (1e-3, 0) and (full.lr, full.warmup_epochs) == (3e-4, 5)


def test_the_seeds_rotation_range_is_the_default_of_train_py_and_of_the_strong_pipeline():
    import albumentations as A

    import dataset
    assert train.parse_args([]).rotate_limit == 45
    strong = dataset.build_transform("strong", img_size=32)
    rotations = [step for step in strong.transforms if isinstance(step, A.Rotate)]
    assert len(rotations) == 1 and tuple(rotations[0].limit) == (-45, 45)


@pytest.mark.parametrize("content, message", [
    ("epochs: 3\nlearning_rate: 0.1\n", "'learning_rate' is not a train.py option"),
    ("augment: extreme\n", "augment: 'extreme' is not one of"),
    ("epochs: many\n", "epochs: 'many' is not a valid value"),
    ("- a list\n", "a recipe is a mapping"),
])
def test_a_bad_recipe_is_a_one_line_error_naming_it(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(UserError, match=message) as error:
        train.parse_args(["--config", str(path)])
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_profile_without_a_section_for_the_recipe_is_refused(tmp_path):
    (tmp_path / "mine.yaml").write_text("epochs: 2\n")
    with pytest.raises(UserError, match="no section for recipe 'mine'"):
        train.parse_args(["--config", str(tmp_path / "mine.yaml"), "--profile", str(recipe.path_of("demo"))])


def test_a_finished_runs_config_re_runs_it_exactly(tiny_cleaned, tmp_path):
    first = tmp_path / "first"
    train.run(train.parse_args(["--data-dir", str(tiny_cleaned), "--output", str(first), *TINY_ARGS, "--epochs", "2",
                                "--lr", "5e-3", "--sampler", "sqrt", "--label-smoothing", "0.05"]))
    again = tmp_path / "again"
    train.run(train.parse_args(["--config", str(first / "config.yaml"), "--output", str(again)]))
    recorded = [yaml.safe_load((run / "config.yaml").read_text())["args"] for run in (first, again)]
    assert {**recorded[0], "output": None, "config": None} == {**recorded[1], "output": None, "config": None}
    histories = [pd.read_csv(run / "history.csv") for run in (first, again)]
    assert histories[0]["train_loss"].tolist() == histories[1]["train_loss"].tolist()
    weights = [torch.load(run / "last.pth", weights_only=True)["state_dict"] for run in (first, again)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
