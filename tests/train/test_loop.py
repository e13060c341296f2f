"""The training loop on the smoke recipe: both stages, exports, exact resume, frozen parts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fusecli.engine import load_weights, read_weights_metadata
from fusecli.engine.model import PSLPT
from fusecli.errors import FuseError
from fusecli.train.checkpoint import load_checkpoint
from fusecli.train.loop import _unsupervised_parts, lr_at, set_trainable, train, train_step
from fusecli.train.losses import LossWeights, unsupervised_loss
from fusecli.train.recipe import Recipe, StageConfig

SMOKE = Path(__file__).resolve().parents[2] / "recipes" / "smoke.yaml"


def _smoke(data_dir: Path, *overrides: str) -> Recipe:
    return Recipe.from_file(SMOKE, (f"data.root={data_dir}", *overrides))


def _state(net) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_lr_schedule_steps_and_epochs():
    s = StageConfig(unit="epoch", length=10, lr=1.0, lr_decay_at=(2, 4), lr_decay_factor=0.5)
    assert [lr_at(s, step, 3) for step in (0, 5, 6, 11, 12)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    s = StageConfig(unit="step", length=10, lr=1.0, lr_decay_at=(3,))
    assert [lr_at(s, step, 99) for step in (2, 3)] == [1.0, 0.5]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted smoke run, shared by the tests that inspect or compare against it."""
    from tests.conftest import DATA

    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    run_dir = tmp_path_factory.mktemp("full")
    return train(_smoke(DATA), run_dir=run_dir), run_dir


@pytest.mark.data
@pytest.mark.slow
def test_smoke_recipe_runs_both_stages_and_exports(data_dir, full_run):
    recipe = _smoke(data_dir)
    result, tmp_path = full_run
    assert (result.stage, result.step, result.stopped_early) == (2, 2, False)
    for name in ("recipe.yaml", "checkpoint.pt", "log.jsonl"):
        assert (tmp_path / name).is_file()
    assert (
        Recipe.from_file(tmp_path / "recipe.yaml", (f"data.root={data_dir}",)).stage1
        == recipe.stage1
    )
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [(r["stage"], r["step"]) for r in train_rows] == [
        (1, 1),
        (1, 2),
        (1, 3),
        (1, 4),
        (2, 1),
        (2, 2),
    ]
    assert train_rows[3]["lr"] == pytest.approx(5e-4)  # halved at step 3
    assert "unsup_texture" in train_rows[-1] and "unsup_texture" not in train_rows[0]
    val_rows = [r for r in rows if r["kind"] == "val"]
    assert {"mff_psnr", "mef_ssim", "val_loss"} <= set(val_rows[0])
    assert "unsup_total" in val_rows[-1]
    meta = read_weights_metadata(tmp_path / "stage2_last.safetensors")
    assert json.loads(meta["recipe"])["stage1"]["length"] == 4 and meta["stage"] == "2"
    last = load_weights(tmp_path / "stage2_last.safetensors")
    for k, v in last.state_dict().items():
        assert torch.equal(v, result.net.state_dict()[k]), k
    assert (tmp_path / "stage1_best.safetensors").is_file()


@pytest.mark.data
@pytest.mark.slow
def test_weight_average_is_validated_exported_and_resumed(data_dir, tmp_path, full_run):
    recipe = _smoke(data_dir, "stage2.ema_decay=0.5")
    run = tmp_path / "interrupted"
    # Stopped after stage 2's first step: the raw weights w1 (the average does not steer training).
    w1 = _state(train(recipe, run_dir=run, stop_after=5).net)
    w0 = load_weights(run / "stage1_last.safetensors").state_dict()  # FAF set 2 starts as set 1
    averaged = _state(train(recipe, run_dir=run, resume=True).net)
    w2 = full_run[0].net.state_dict()  # the same run without an average ends at the raw w2
    d1, d2 = 2 / 11, 3 / 12  # warm-up decays of updates 1 and 2, below 0.5
    for k in averaged:
        if k.startswith("faf2."):
            start = w0["faf1." + k[5:]]
            expected = d2 * (d1 * start + (1 - d1) * w1[k]) + (1 - d2) * w2[k]
            assert torch.allclose(averaged[k], expected, atol=1e-6), k
        else:
            assert torch.equal(averaged[k], w2[k]), k
    assert any(not torch.equal(averaged[k], w2[k]) for k in averaged if k.startswith("faf2."))
    last = load_weights(run / "stage2_last.safetensors").state_dict()
    for k, v in last.items():
        assert torch.equal(v, averaged[k]), k
    # The stage-2 validation row scores the average, so it differs from the plain run's.
    val = [json.loads(r) for r in (run / "log.jsonl").read_text().splitlines() if '"val"' in r]
    plain = [json.loads(r) for r in (full_run[1] / "log.jsonl").read_text().splitlines()]
    plain_val = [r for r in plain if r["kind"] == "val"]
    assert val[-1]["stage"] == plain_val[-1]["stage"] == 2
    assert val[-1]["val_loss"] != plain_val[-1]["val_loss"]


@pytest.mark.data
@pytest.mark.slow
def test_stage2_trains_only_faf2_starting_from_faf1(data_dir, tmp_path):
    recipe = _smoke(data_dir)
    train(recipe, run_dir=tmp_path, stages=(1,))
    stage1 = load_weights(tmp_path / "stage1_last.safetensors").state_dict()
    net = train(recipe, run_dir=tmp_path, stages=(2,)).net
    after = net.state_dict()
    for k, v in after.items():
        if k.startswith("faf2."):
            continue
        assert torch.equal(v, stage1[k]), f"{k} changed in stage 2"
    changed = [
        k
        for k in after
        if k.startswith("faf2.") and not torch.equal(after[k], stage1["faf1." + k[5:]])
    ]
    assert changed, "FAF set 2 did not move away from its copy of set 1"


@pytest.mark.data
@pytest.mark.slow
def test_init_weights_start_stage_1_when_it_is_the_first_stage(data_dir, full_run, tmp_path):
    _, full_dir = full_run
    start = load_weights(full_dir / "stage2_last.safetensors").state_dict()
    # With a zero learning rate the stage ends where it started: at the given weights.
    recipe = _smoke(data_dir, "stage1.lr=0.0", "stage1.length=1")
    init = full_dir / "stage2_last.safetensors"
    net = train(recipe, run_dir=tmp_path / "a", stages=(1,), init_weights=init).net
    for k, v in net.state_dict().items():
        assert torch.equal(v, start[k]), k
    scratch = train(recipe, run_dir=tmp_path / "b", stages=(1,)).net
    assert not torch.equal(
        scratch.state_dict()["faf1." + next(iter(net.faf1.state_dict()))],
        start["faf1." + next(iter(net.faf1.state_dict()))],
    )


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [3, 5])  # mid stage 1; mid stage 2 (after the handover)
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(
    data_dir, tmp_path, full_run, stop_after
):
    recipe = _smoke(data_dir)
    full = _state(full_run[0].net)

    run = tmp_path / "interrupted"
    first = train(recipe, run_dir=run, stop_after=stop_after)
    assert first.stopped_early
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert (ckpt["stage"], ckpt["step"]) == ((1, 2) if stop_after == 3 else (2, 1))
    resumed = _state(train(recipe, run_dir=run, resume=True).net)
    for k, v in full.items():
        assert torch.equal(v, resumed[k]), f"{k} differs after resume"
    # The resumed log has exactly one row per step, as an uninterrupted run's.
    steps = [
        (r["stage"], r["step"])
        for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
        if r["kind"] == "train"
    ]
    assert steps == sorted(set(steps)) and len(steps) == 6


@pytest.mark.data
def test_refuses_to_overwrite_a_run_or_resume_with_another_recipe(data_dir, tmp_path):
    recipe = _smoke(data_dir, "stage1.length=1", "stage2.enabled=false")
    train(recipe, run_dir=tmp_path)
    with pytest.raises(FuseError, match="already holds a run"):
        train(recipe, run_dir=tmp_path)
    other = _smoke(data_dir, "stage1.length=2", "stage2.enabled=false")
    with pytest.raises(FuseError, match="recipe differs"):
        train(other, run_dir=tmp_path, resume=True)


def test_resume_without_checkpoint_is_a_fuse_error(tmp_path):
    with pytest.raises(FuseError, match="no checkpoint"):
        train(Recipe(), run_dir=tmp_path, resume=True)


def test_weight_decay_exempts_position_bias_and_logit_scale():
    from fusecli.engine import PSLPT
    from fusecli.train.loop import make_optimizer

    net = PSLPT()
    recipe = Recipe.from_dict({"optimizer": {"name": "adamw", "weight_decay": 0.05}})
    decay, exempt = make_optimizer(recipe, net, 1e-4).param_groups
    names = {id(p): n for n, p in net.named_parameters()}
    assert exempt["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    assert all("cpb_mlp" in names[id(p)] or "logit_scale" in names[id(p)] for p in exempt["params"])
    assert any("logit_scale" in names[id(p)] for p in exempt["params"])
    assert len(decay["params"]) + len(exempt["params"]) == len(list(net.parameters()))
    (single,) = make_optimizer(Recipe(), net, 1e-4).param_groups  # Adam without decay
    assert len(single["params"]) == len(list(net.parameters()))


def test_each_pair_folder_gets_its_own_unsupervised_weights():
    torch.manual_seed(0)
    fused, ra, rb, a, b = (torch.rand(4, 1, 16, 16) for _ in range(5))
    folders = torch.tensor([1, 0, 1, 1])
    base = LossWeights(ssim_weight=2.0)
    mmf = LossWeights(ssim_weight=40.0, intensity_weight=0.5)
    parts = _unsupervised_parts(fused, ra, rb, a, b, folders, (base, mmf), base)
    rows = [folders == k for k in (0, 1)]
    by_folder = [
        unsupervised_loss(fused[r], ra[r], rb[r], a[r], b[r], weights=w)
        for r, w in zip(rows, (base, mmf), strict=True)
    ]
    # The mean over crops: folder 0 holds one crop of four, folder 1 three.
    expected = 0.25 * by_folder[0]["total"] + 0.75 * by_folder[1]["total"]
    assert torch.isclose(parts["total"], expected)
    # One set of weights for all folders is the plain batch loss.
    same = _unsupervised_parts(fused, ra, rb, a, b, folders, (base, base), base)
    whole = unsupervised_loss(fused, ra, rb, a, b, weights=base)
    assert all(torch.isclose(same[k], whole[k]) for k in whole)
    assert all(torch.isclose(same[k], parts[k], atol=1e-6) for k in ("ssim", "recon"))


def test_a_joint_stage_sends_each_task_through_its_own_faf_set():
    torch.manual_seed(0)
    net = PSLPT()
    stage = StageConfig(
        faf_set=2, labeled_faf_set=1, batch_unlabeled=2,
        train=("encoder1", "encoder2", "decoder", "faf1", "faf2"),
    )  # fmt: skip
    params = set_trainable(net, stage.train)
    a, b, gt = (torch.rand(2, 1, 32, 32) for _ in range(3))
    batches = {"mff": (a[:1], b[:1], gt[:1]), "mef": (a[1:], b[1:], gt[1:])}
    batches["unlabeled"] = (b, a, torch.zeros(2, dtype=torch.int64))
    loss, _ = train_step(net, batches, stage, LossWeights())
    loss.backward()
    assert all(p.grad is not None for p in params)
    # Without the unlabeled crops only set 1 (the labeled set) gets a gradient.
    net.zero_grad(set_to_none=True)
    loss, _ = train_step(net, {k: batches[k] for k in ("mff", "mef")}, stage, LossWeights())
    loss.backward()
    assert all(p.grad is None for p in net.faf2.parameters())
    assert all(p.grad is not None for p in net.faf1.parameters())


def test_large_labeled_batches_are_forwarded_in_pieces_with_the_same_result(monkeypatch):
    from fusecli.train import loop

    torch.manual_seed(0)
    net = PSLPT()
    stage = StageConfig()
    set_trainable(net, stage.train)
    a, b, gt = (torch.rand(4, 1, 32, 32) for _ in range(3))
    batches = {"mff": (a[:2], b[:2], gt[:2]), "mef": (a[2:], b[2:], gt[2:])}

    def loss_and_grads():
        net.zero_grad(set_to_none=True)
        loss, _ = train_step(net, batches, stage, LossWeights())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None]

    whole, whole_grads = loss_and_grads()
    monkeypatch.setattr(loop, "MAX_PIXELS_PER_FORWARD", 32 * 32)  # one crop per forward
    pieces, piece_grads = loss_and_grads()
    assert torch.allclose(whole, pieces, rtol=1e-5)
    # Float summation order differs: compare each gradient relative to its own scale.
    for g, h in zip(whole_grads, piece_grads, strict=True):
        assert float((g - h).abs().max()) <= 1e-3 * float(g.abs().max())
