"""Tests of the model-card benchmark: held-out sets, the stage-1 network, the bar, the table."""

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from model_card import (
    CARD_END,
    CARD_START,
    Comparison,
    EvalSet,
    Stat,
    compare,
    competitors,
    composition_stamp,
    evaluation_sets,
    markdown_table,
    network_digest,
    ours_folders,
    stage1_network,
    summarise,
    table_blocks,
    update_card,
    verdict,
)

from fusecli.engine.config import ModelConfig
from fusecli.engine.model import PSLPT
from fusecli.plugins import load_catalog
from fusecli.train.data import held_out_pairs
from fusecli.train.recipe import Recipe

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".." / "shared" / "data"
SMALL = ModelConfig(channels=12, num_heads=2, levels=2)
CATALOG = load_catalog(autoload=False)


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


def test_results_composed_another_way_are_not_reused() -> None:
    mef = CATALOG.get("mef").spec
    stamps = {
        composition_stamp(dataclasses.replace(mef, compose=compose))
        for compose in ("network", "select", "detail")
    }
    assert len(stamps) == 3
    assert composition_stamp(mef) != composition_stamp(dataclasses.replace(mef, global_view=0))


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


def test_ours_is_the_mean_over_seeds_with_its_spread() -> None:
    values = {
        "laplacian": {"Qabf": 0.60},
        "ours": {"Qabf": 0.70},
        "ours-2": {"Qabf": 0.66},
    }
    stats = summarise(values, ["ours", "ours-2"])
    assert set(stats) == {"laplacian", "ours"}
    assert stats["ours"].mean["Qabf"] == pytest.approx(0.68)
    assert stats["ours"].spread == {"Qabf": pytest.approx(0.04)}
    assert stats["laplacian"].spread is None
    # One weights file: no spread, not a spread of zero.
    assert summarise({"ours": {"Qabf": 0.7}}, ["ours"])["ours"].spread is None


def test_seeds_that_share_a_task_network_give_no_spread_on_it() -> None:
    # Two stage-2 seeds differ only in FAF set 2: on MFF and MEF they are one network, and a
    # spread of zero there would turn every lead into a win.
    values = {
        "guided": {"Qabf": 0.69, "Qcb": 0.60, "FMI": 0.88},
        "ours": {"Qabf": 0.70, "Qcb": 0.61, "FMI": 0.89},
    }
    values["ours-2"] = dict(values["ours"])
    stats = summarise(values, ["ours", "ours-2"])
    assert stats["ours"].spread is None and stats["ours"].shared
    found = compare(stats, "mff", ["guided"])
    assert {c.state for c in found} == {"ahead"}
    assert "the weights files share this task's network" in found[0].text()
    # One metric equal by chance is not a shared network.
    values["ours-2"] = {"Qabf": 0.70, "Qcb": 0.62, "FMI": 0.89}
    assert not summarise(values, ["ours", "ours-2"])["ours"].shared


def test_a_lead_within_the_seed_spread_is_not_a_lead() -> None:
    assert Comparison("Qabf", 0.70, 0.01, "guided", 0.68).state == "wins"
    assert Comparison("Qabf", 0.70, 0.03, "guided", 0.68).state == "within spread"
    assert Comparison("Qabf", 0.66, 0.03, "guided", 0.68).state == "within spread"
    assert Comparison("Qabf", 0.60, 0.03, "guided", 0.68).state == "loses"
    assert Comparison("Qabf", 0.70, None, "guided", 0.68).state == "ahead"
    assert Comparison("Qabf", 0.60, None, "guided", 0.68).state == "behind"
    loss = Comparison("Qcb", 0.55, 0.01, "laplacian", 0.65)
    assert loss.margin == pytest.approx(-0.10)
    assert "loses** by 0.1000" in loss.text()
    assert "not a lead" in Comparison("Qabf", 0.70, 0.03, "guided", 0.68).text()


def test_compare_takes_the_best_tool_per_primary_metric_and_ignores_stage1() -> None:
    stats = {
        "average": Stat({"MEF_SSIM": 0.93, "Qabf": 0.58}),
        "mertens": Stat({"MEF_SSIM": 0.98, "Qabf": 0.70}),
        "laplacian": Stat({"MEF_SSIM": 0.97, "Qabf": 0.72}),
        "stage1": Stat({"MEF_SSIM": 0.99, "Qabf": 0.99}),
        "ours": Stat({"MEF_SSIM": 0.96, "Qabf": 0.74}, {"MEF_SSIM": 0.002, "Qabf": 0.01}),
    }
    found = compare(stats, "mef", ["average", "mertens", "laplacian"])
    assert [(c.metric, c.tool, c.state) for c in found] == [
        ("MEF_SSIM", "mertens", "loses"),
        ("Qabf", "laplacian", "wins"),
    ]


def test_each_tool_competes_only_on_its_tasks() -> None:
    tools = ["enfuse", "mertens", "openfocus"]
    assert competitors("ivf", tools) == ["average", "laplacian", "guided"]
    assert competitors("mmf", tools) == ["average", "laplacian", "guided"]
    assert competitors("mff", tools) == ["average", "laplacian", "guided", "enfuse", "openfocus"]
    assert competitors("mef", tools) == ["average", "laplacian", "guided", "enfuse", "mertens"]
    assert competitors("mef", []) == ["average", "laplacian", "guided"]
    assert ours_folders(1) == ["ours"]
    assert ours_folders(3) == ["ours", "ours-2", "ours-3"]


def _result(per_image: dict[str, float]) -> dict:
    images = {
        stem: dict.fromkeys(("Qabf", "Qcb", "FMI", "SSIM", "MI", "NMI"), v)
        for stem, v in per_image.items()
    }
    mean = {
        m: sum(v[m] for v in images.values()) / len(images) for m in next(iter(images.values()))
    }
    return {"mean": mean, "images": images, "n": len(images)}


def test_pooled_blocks_weigh_every_pair_and_carry_the_seed_spread() -> None:
    sets = [
        EvalSet("A", "mmf", Path("a"), ("x", "y"), ("1.png",)),
        EvalSet("B", "mmf", Path("b"), ("x", "y"), ("1.png", "2.png", "3.png")),
    ]
    folders = {"average": 0.4, "laplacian": 0.6, "guided": 0.5, "stage1": 0.3}
    results = {
        "A": {
            **{f: _result({"1": v}) for f, v in folders.items()},
            "ours": _result({"1": 0.9}),
            "ours-2": _result({"1": 0.7}),
        },
        "B": {
            **{f: _result({"1": v, "2": v, "3": v}) for f, v in folders.items()},
            "ours": _result({"1": 0.5, "2": 0.5, "3": 0.5}),
            "ours-2": _result({"1": 0.7, "2": 0.7, "3": 0.7}),
        },
    }
    blocks, pooled = table_blocks(results, sets, [], ["ours", "ours-2"])
    assert [label for label, _, _ in blocks] == ["MMF A (1)", "MMF B (3)", "**MMF all (4)**"]
    ours = pooled["mmf"]["ours"]
    # Pooled over the 4 pairs (not the mean of two set means): seed 1 0.6, seed 2 0.7.
    assert ours.mean["Qabf"] == pytest.approx(0.65)
    assert ours.spread["Qabf"] == pytest.approx(0.1)
    assert list(pooled["mmf"]) == ["average", "laplacian", "guided", "stage1", "ours"]
    table = markdown_table(blocks)
    assert "| ours | **0.6500** [0.1000] |" in table
    assert "MEF_SSIM" in table.splitlines()[0]
