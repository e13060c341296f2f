"""Recipe parsing: shipped recipes, the paper's values, and one clear error per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusecli.engine.config import ModelConfig
from fusecli.errors import RecipeError
from fusecli.train.recipe import Recipe, recipe_to_dict

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("name", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_shipped_recipes_load(name):
    recipe = Recipe.from_file(RECIPES / name)
    # Stage 1's supervised crops go through set 1 (MFF/MEF); stage 2, where a recipe has one,
    # refits set 2 alone.
    assert recipe.stage1.faf_set_labeled == 1
    if recipe.stage2.enabled:
        assert recipe.stage2.faf_set == 2 and recipe.stage2.train == ("faf2",)
    assert Recipe.from_dict(recipe_to_dict(recipe)) == recipe


def test_long_recipe_trains_the_whole_network_on_every_task_in_stage_1():
    r = Recipe.from_file(RECIPES / "cpu_long.yaml")
    assert set(r.stage1.train) == {"encoder1", "encoder2", "decoder", "faf1", "faf2"}
    assert (r.stage1.faf_set_labeled, r.stage1.faf_set) == (1, 2)
    assert r.stage1.batch_unlabeled > 0 and r.stage1.crop_labeled == 128
    assert any(p.path.startswith("harvard/") for p in r.data.unlabeled)
    assert r.stage1.grad_clip >= 0.1  # not the 1e-4 that starved Adam (recipe header)


def test_mef_recipes_draw_brackets_that_may_hold_the_well_exposed_frame():
    # Brackets whose frames are both >= 1 stop off taught the network to take its brightness
    # from between them and wash out real brackets with one right frame (recipe headers).
    long_run, continued = (
        Recipe.from_file(RECIPES / n) for n in ("cpu_long.yaml", "cpu_long_mef.yaml")
    )
    refit = Recipe.from_file(RECIPES / "cpu_mef_refit.yaml")
    for recipe in (continued, refit):
        assert recipe.data.mef.under_stops[0] == 0 and recipe.data.mef.over_stops[0] == 0
        assert not recipe.stage2.enabled
    assert refit.stage1.train == ("faf1",) and refit.stage1.batch_unlabeled == 0
    # The continuation changes only the brackets and the schedule of the long run's stage 1.
    assert continued.stage1.train == long_run.stage1.train
    assert continued.loss == long_run.loss and continued.data.unlabeled == long_run.data.unlabeled
    assert continued.data.mef.illumination_stops == long_run.data.mef.illumination_stops


def test_two_stage_recipe_has_the_paper_values():
    r = Recipe.from_file(RECIPES / "two_stage.yaml")
    loss = r.loss
    assert (
        loss.mef_weight,
        loss.recon_weight,
        loss.unsupervised_weight,
        loss.unsupervised_recon_weight,
        loss.texture_weight,
        loss.ssim_weight,
    ) == (0.1, 0.5, 0.1, 1.25, 1.0, 0.5)
    assert loss.supervised_texture_weight == 0.0  # our addition, off in the paper's recipe
    assert loss.mff_l1_weight == loss.mef_l1_weight == 0.0  # likewise
    assert r.optimizer.name == "adam"
    s1, s2 = r.stage1, r.stage2
    assert (s1.unit, s1.length, s1.lr, s1.lr_decay_at, s1.lr_decay_factor) == (
        "epoch", 320, 1e-4, (200,), 0.5,
    )  # fmt: skip
    assert (s2.unit, s2.length, s2.lr) == ("epoch", 20, 3e-5)
    assert s1.crop_labeled == s2.crop_labeled == 128 and s2.crop_unlabeled == 64
    assert s1.grad_clip == s2.grad_clip == 1e-4
    assert set(s1.train) == {"encoder1", "encoder2", "decoder", "faf1"}
    assert s2.init_faf2_from_faf1 and s2.init_from == "previous_last"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_all_errors_are_reported_together_with_key_paths_and_lines(tmp_path):
    path = _write(
        tmp_path,
        "seed: 1\n"
        "stage1:\n"
        "  lenght: 3\n"  # line 3: typo
        "  lr: fast\n"  # line 4: wrong type
        "data:\n"
        "  unlabeled:\n"
        "    - {name: x, path: p, dirs: [a, b], colour: red}\n",  # line 7: unknown key
    )
    with pytest.raises(RecipeError) as err:
        Recipe.from_file(path)
    msg = str(err.value)
    assert "3 problem(s)" in msg
    assert "stage1.lenght (line 3) is not a known key" in msg
    assert "stage1.lr (line 4) must be a number" in msg
    assert "data.unlabeled.0.colour (line 7) is not a known key" in msg


def test_value_errors_name_the_section(tmp_path):
    path = _write(tmp_path, "stage2:\n  crop_unlabeled: 50\n")
    with pytest.raises(
        RecipeError, match=r"stage2 \(line 1\): crop_unlabeled must be a positive multiple of 16"
    ):
        Recipe.from_file(path)


def test_wrong_types_and_unknown_model_keys(tmp_path):
    path = _write(tmp_path, "seed: 1.5\ndeterministic: yes please\n")
    with pytest.raises(RecipeError) as err:
        Recipe.from_file(path)
    msg = str(err.value)
    assert "seed (line 1) must be an integer" in msg
    assert "deterministic (line 2) must be true or false" in msg
    with pytest.raises(RecipeError, match=r"model.width \(line 1\) is not a known key"):
        Recipe.from_file(_write(tmp_path, "model: {width: 3}\n"))


def test_the_model_section_is_a_model_config(tmp_path):
    assert Recipe().model == ModelConfig()
    r = Recipe.from_file(_write(tmp_path, "model: {channels: 24, num_heads: 4}\n"))
    assert r.model == ModelConfig(channels=24, num_heads=4)
    assert Recipe.from_file(_write(tmp_path, "seed: 1\n"), ("model.depth=1",)).model.depth == 1


def test_every_problem_of_every_section_is_reported_at_once(tmp_path):
    path = _write(
        tmp_path,
        "model: {channels: 50, num_heads: 4, levels: 0, colour: 1}\n"  # line 1: three problems
        "loss: {mef_weight: heavy, ssim: 1.0, texture_weight: -1}\n"  # line 2: three problems
        "stage1:\n"
        "  lr: fast\n"  # line 4: a wrong type does not hide the range errors below
        "  crop_labeled: 50\n"
        "  faf_set: 3\n"
        "  loss: {ssim_weight: x, intensity_weight: -2}\n"
        "  grad_clip: -1\n"
        "  lr_decay_factor: 2\n"
        "data:\n"
        "  unlabeled:\n"
        "    - {path: p, repeat: 0, loss: {mef_weight: 1.0}}\n",  # line 12: two problems
    )
    with pytest.raises(RecipeError) as err:
        Recipe.from_file(path)
    msg = str(err.value)
    expected = [
        "model.colour (line 1) is not a known key",
        "model (line 1): channels (50) must be divisible by num_heads (4)",
        "model (line 1): levels, depth and window_size must be at least 1",
        "loss.mef_weight (line 2) must be a number",
        "loss.ssim (line 2) is not a known key",
        "loss (line 2): loss weights must be >= 0, got texture_weight=-1.0",
        "stage1.lr (line 4) must be a number",
        "stage1 (line 3): crop_labeled must be a positive multiple of 16",
        "stage1 (line 3): faf_set must be 1 or 2",
        "stage1 (line 3): loss.ssim_weight must be a number",
        "stage1 (line 3): loss.intensity_weight must be >= 0, got -2",
        "stage1 (line 3): grad_clip must be >= 0",
        "stage1 (line 3): lr_decay_factor must lie in (0, 1], got 2.0",
        "data.unlabeled.0 (line 12): repeat must be a whole number",
        "data.unlabeled.0 (line 12): loss has unknown keys ['mef_weight']",
    ]
    for problem in expected:
        assert problem in msg
    assert f"{len(expected)} problem(s)" in msg


def test_exponent_without_dot_is_a_number(tmp_path):
    # YAML 1.1 reads 1e-4 as a string; recipes written by people use it anyway.
    assert Recipe.from_file(_write(tmp_path, "stage1: {lr: 1e-4}\n")).stage1.lr == 1e-4


def test_overrides_set_existing_keys_only(tmp_path):
    path = _write(tmp_path, "stage1: {length: 3}\n")
    r = Recipe.from_file(path, ("stage1.length=7", "data.val_crop=64", "loss.mef_weight=0.2"))
    assert (r.stage1.length, r.data.val_crop, r.loss.mef_weight) == (7, 64, 0.2)
    with pytest.raises(RecipeError, match="names no recipe key"):
        Recipe.from_file(path, ("stage1.lenght=7",))
    with pytest.raises(RecipeError, match=r"stage1.length \(line 1\)|stage1.length must be"):
        Recipe.from_file(path, ("stage1.length=abc",))


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(RecipeError, match="cannot read recipe"):
        Recipe.from_file(tmp_path / "missing.yaml")
    with pytest.raises(RecipeError, match="not valid YAML"):
        Recipe.from_file(_write(tmp_path, "seed: [1\n"))
    with pytest.raises(RecipeError, match="must be a mapping"):
        Recipe.from_file(_write(tmp_path, "- 1\n- 2\n"))


def test_data_root_is_relative_to_the_recipe_file(tmp_path):
    r = Recipe.from_file(_write(tmp_path, "data: {root: ../d}\n"))
    assert r.data_root == tmp_path / ".." / "d"


def test_stage_loss_overrides_apply_to_that_stage_only(tmp_path):
    path = _write(tmp_path, "loss: {texture_weight: 8.0}\nstage2:\n  loss: {texture_weight: 2}\n")
    r = Recipe.from_file(path, ("stage1.loss.ssim_weight=3",))
    assert r.stage1.loss_weights(r.loss).texture_weight == 8.0
    assert r.stage1.loss_weights(r.loss).ssim_weight == 3.0
    assert r.stage2.loss_weights(r.loss).texture_weight == 2.0
    # the paper's default, not stage 1's override
    assert r.stage2.loss_weights(r.loss).ssim_weight == 0.5
    with pytest.raises(RecipeError, match=r"stage2 \(line 3\): loss has unknown keys \['textur'\]"):
        Recipe.from_file(_write(tmp_path, "\n\nstage2: {loss: {textur: 1.0}}\n"))
    with pytest.raises(RecipeError, match=r"loss\.ssim_weight must be a number"):
        Recipe.from_file(_write(tmp_path, "stage1: {loss: {ssim_weight: high}}\n"))


def test_pair_folders_may_set_their_own_unsupervised_weights(tmp_path):
    text = "data:\n  unlabeled:\n    - {path: p, loss: {ssim_weight: 40, intensity_weight: 0.5}}\n"
    r = Recipe.from_file(_write(tmp_path, text))
    assert r.data.unlabeled[0].loss == {"ssim_weight": 40, "intensity_weight": 0.5}
    # Only the weights of the unsupervised loss belong to a pair folder.
    bad = "data:\n  unlabeled:\n    - {path: p, loss: {mef_weight: 1.0}}\n"
    with pytest.raises(RecipeError, match=r"unlabeled\.0 \(line 3\): loss has unknown keys"):
        Recipe.from_file(_write(tmp_path, bad))
    with pytest.raises(RecipeError, match=r"loss\.ssim_weight must be a number"):
        Recipe.from_file(_write(tmp_path, bad.replace("mef_weight: 1.0", "ssim_weight: x")))


def test_pair_folder_repeat_is_a_whole_number_of_at_least_one(tmp_path):
    r = Recipe.from_file(_write(tmp_path, "data:\n  unlabeled:\n    - {path: p, repeat: 3}\n"))
    assert r.data.unlabeled[0].repeat == 3
    with pytest.raises(RecipeError, match=r"unlabeled\.0 \(line 3\): repeat must be a whole"):
        Recipe.from_file(_write(tmp_path, "data:\n  unlabeled:\n    - {path: p, repeat: 0}\n"))
    with pytest.raises(RecipeError, match=r"repeat"):
        Recipe.from_file(_write(tmp_path, "data:\n  unlabeled:\n    - {path: p, repeat: 1.5}\n"))


def test_stage_weight_average_decay_is_off_or_below_one(tmp_path):
    assert (
        Recipe.from_file(_write(tmp_path, "stage2: {ema_decay: 0.995}\n")).stage2.ema_decay == 0.995
    )
    assert Recipe().stage1.ema_decay == 0.0
    with pytest.raises(RecipeError, match=r"stage2 \(line 1\): ema_decay must be 0 \(off\)"):
        Recipe.from_file(_write(tmp_path, "stage2: {ema_decay: 1.0}\n"))


def test_labeled_faf_set_and_natural_scale_are_validated(tmp_path):
    r = Recipe.from_file(
        _write(
            tmp_path,
            "data: {natural: {scale: [0.5, 1.0]}}\nstage1: {faf_set: 2, labeled_faf_set: 1}\n",
        )
    )
    assert r.data.natural.scale == (0.5, 1.0)
    assert (r.stage1.faf_set_labeled, r.stage1.faf_set) == (1, 2)
    assert Recipe().stage2.faf_set_labeled == Recipe().stage2.faf_set
    with pytest.raises(RecipeError, match=r"labeled_faf_set must be 0"):
        Recipe.from_file(_write(tmp_path, "stage1: {labeled_faf_set: 3}\n"))
    with pytest.raises(RecipeError, match=r"natural.scale must be"):
        Recipe.from_file(_write(tmp_path, "data: {natural: {scale: [0.5, 1.5]}}\n"))
