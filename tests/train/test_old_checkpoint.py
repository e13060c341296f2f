"""A checkpoint in the layout the trainer wrote before issue 22's phase 2 still resumes.

The long CPU run (recipes/cpu_long.yaml) was started with that trainer and resumes across
sessions, so its checkpoint.pt must load with every later trainer. That layout is one dict of
plain types and tensors: format, stage, step, total_steps, model, optimizer, scaler, ema, rng,
best_val and the resolved recipe as the old trainer wrote it, with ``model: {}`` (the recipe's
model section held only overrides then). old_checkpoint_recipes.json holds those stored recipes
for recipes/smoke.yaml and recipes/cpu_long.yaml, written by that trainer (data root left out).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fusecli.engine.model import PSLPT
from fusecli.train import Recipe, train
from fusecli.train.checkpoint import rng_state

REPO = Path(__file__).resolve().parents[2]
OLD_RECIPES = json.loads((Path(__file__).parent / "old_checkpoint_recipes.json").read_text())


def old_stored_recipe(name: str, recipe: Recipe) -> dict:
    """The recipe as the old trainer stored it in the checkpoint of a run of ``recipe``."""
    stored = json.loads(json.dumps(OLD_RECIPES[name]))
    stored["data"]["root"] = str(recipe.data_root.resolve())
    return stored


def write_old_checkpoint(path: Path, recipe: Recipe, stored: dict, *, step: int) -> dict:
    """A stage-1 checkpoint with the old layout, built by hand: model, Adam state, RNG states."""
    torch.manual_seed(5)
    net = PSLPT()
    for name, child in net.named_children():
        child.requires_grad_(name in recipe.stage1.train)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(
        [{"params": params}], lr=recipe.stage1.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0
    )
    sum(p.square().sum() for p in params).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    payload = {
        "format": 1,
        "stage": 1,
        "step": step,
        "total_steps": recipe.stage1.length,
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(),
        "ema": None,
        "rng": [rng_state()],
        "best_val": 1e9,
        "recipe": stored,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return payload


@pytest.mark.data
@pytest.mark.slow
def test_a_checkpoint_in_the_old_layout_resumes(data_dir, tmp_path):
    recipe = Recipe.from_file(REPO / "recipes" / "smoke.yaml", (f"data.root={data_dir}",))
    run = tmp_path / "run"
    payload = write_old_checkpoint(
        run / "checkpoint.pt", recipe, old_stored_recipe("smoke", recipe), step=2
    )
    paused = train(recipe, run_dir=run, resume=True, stop_after=0)
    assert (paused.stage, paused.step, paused.stopped_early) == (1, 2, True)
    for key, value in paused.net.state_dict().items():
        assert torch.equal(value, payload["model"][key]), key
    result = train(recipe, run_dir=run, resume=True)
    assert (result.stage, result.step, result.stopped_early) == (2, 2, False)
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["step"]) for r in rows if r["kind"] == "train"] == [
        (1, 3),
        (1, 4),
        (2, 1),
        (2, 2),
    ]


@pytest.mark.parametrize("name", ["smoke", "cpu_long"])
def test_the_old_stored_recipe_is_the_same_recipe(name):
    # Only the recipe check of a resume, without the data: the long run's checkpoint holds
    # cpu_long's recipe as the old trainer stored it (model: {}, loss weights by recipe name).
    from fusecli.train.loop import resolved_recipe, same_recipe

    recipe = Recipe.from_file(REPO / "recipes" / f"{name}.yaml")
    stored = old_stored_recipe(name, recipe)
    assert stored["model"] == {}
    assert same_recipe(stored, recipe)
    assert resolved_recipe(recipe)["model"]["channels"] == 48  # today's store the whole config
    changed = json.loads(json.dumps(stored))
    changed["stage1"]["lr"] *= 2
    assert not same_recipe(changed, recipe)
    assert not same_recipe({**stored, "model": {"width": 3}}, recipe)
