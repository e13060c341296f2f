"""Tests of the model-card benchmark: held-out sets, the stage-1 network and the bar."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from model_card import (
    CARD_END,
    CARD_START,
    evaluation_sets,
    network_digest,
    stage1_network,
    update_card,
    verdict,
)

from fusecli.engine.config import ModelConfig
from fusecli.engine.model import PSLPT
from fusecli.engine.train.data import held_out_pairs
from fusecli.engine.train.recipe import Recipe

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".." / "shared" / "data"
SMALL = ModelConfig(channels=12, num_heads=2, levels=2)


def _means(ours: dict[str, float], average: float = 0.5, laplacian: float = 0.6) -> dict:
    metrics = ("Qabf", "SSIM", "MI", "NMI", "FMI", "Qcb")
    return {
        "average": dict.fromkeys(metrics, average),
        "laplacian": dict.fromkeys(metrics, laplacian),
        "stage1": dict.fromkeys(metrics, 0.0),
        "ours": {m: ours.get(m, 0.0) for m in metrics},
    }


def test_bar_needs_qabf_and_two_other_wins_over_both_baselines() -> None:
    assert verdict(_means({"Qabf": 0.7, "SSIM": 0.7, "MI": 0.7}), "ivf") == (True, ["SSIM", "MI"])
    # Beating only the average on Qabf is not enough.
    assert not verdict(_means({"Qabf": 0.55, "SSIM": 0.7, "MI": 0.7}), "ivf")[0]
    assert not verdict(_means({"Qabf": 0.7, "SSIM": 0.7}), "ivf")[0]


def test_stage1_network_uses_fusion_set_1_for_every_task() -> None:
    torch.manual_seed(0)
    net = PSLPT(SMALL).eval()
    stage1 = stage1_network(net)
    a, b = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(stage1.fuse(a, b, faf_set=2), net.fuse(a, b, faf_set=1))
        assert not torch.equal(net.fuse(a, b, faf_set=2), net.fuse(a, b, faf_set=1))
    # MFF/MEF outputs are cached under one digest for both, IVF/MMF under different ones.
    assert network_digest(stage1, 1) == network_digest(net, 1) == network_digest(stage1, 2)
    assert network_digest(net, 2) != network_digest(net, 1)


def test_update_card_rewrites_only_the_marked_table(tmp_path) -> None:
    card = tmp_path / "README.md"
    card.write_text(f"# card\n{CARD_START}\nold\n{CARD_END}\ntail\n")
    update_card(card, "| new |")
    assert card.read_text() == f"# card\n{CARD_START}\n| new |\n{CARD_END}\ntail\n"


@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data beside the repository")
def test_sets_hold_exactly_the_pairs_the_recipe_keeps_out_of_training() -> None:
    recipe = Recipe.from_file(REPO / "recipes" / "cpu.yaml")
    ordered = evaluation_sets(recipe, DATA, max_pairs=0)
    assert [s.task for s in ordered] == ["ivf", "mmf", "mmf", "mmf", "mff", "mff", "mef"]
    sets = {s.name: s for s in ordered}
    held_out = held_out_pairs(DATA, recipe.data)
    assert list(sets["RoadScene"].names) == held_out["ivf/roadscene"]
    assert list(sets["MRI-PET"].names) == held_out["mmf/mri-pet"]
    # No shipped recipe trains on MFI-WHU, MFFW or MEFB: all of their pairs are development pairs.
    assert (len(sets["MFI-WHU"].names), len(sets["MFFW"].names), len(sets["MEFB"].names)) == (
        30,
        13,
        66,
    )
    for s in sets.values():
        for folder in s.dirs:
            assert all((s.folder / folder / name).is_file() for name in s.names)


@pytest.mark.data
@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data beside the repository")
def test_refinement_recipes_keep_out_the_pairs_the_first_training_kept_out() -> None:
    # The shipped model is cpu.yaml's, refined with each of the others in turn: a pair held out by
    # one and trained on by another would leak into the results table.
    first = held_out_pairs(DATA, Recipe.from_file(REPO / "recipes" / "cpu.yaml").data)
    later = (
        "cpu_refine.yaml",
        "cpu_finetune.yaml",
        "cpu_stage2_mmf.yaml",
        "cpu_stage2_balance.yaml",
        "cpu_long.yaml",
    )
    for name in later:
        held_out = held_out_pairs(DATA, Recipe.from_file(REPO / "recipes" / name).data)
        assert {k: v for k, v in held_out.items() if k in first} == first, name
        # Folders the first training did not use are training-only sets (harvard/): nothing
        # of them is evaluated, so they hold nothing out.
        assert all(not held_out[k] for k in set(held_out) - set(first)), name
