"""Golden numbers of a few joint training steps, pinned before the trainer was restructured.

The recipe below touches every path of a training step that a refactor could change without a
unit test noticing: a joint stage (MFF/MEF through FAF set 1, IVF/MMF pairs through set 2), loss
weights from the recipe, overridden per stage and per pair folder, AdamW with the weight-decay
exemption, gradient clipping, a weight average, a learning-rate decay and stage 2 starting from
stage 1's output. The numbers were computed with the trainer as it was before issue 22's phase 2
(commit 4bf280b); the restructure must reproduce them.
"""

from __future__ import annotations

import json

import pytest
import yaml

from fusecli.train import Recipe, train
from fusecli.train.loop import parameter_checksum

RECIPE = {
    "seed": 3,
    "device": "cpu",
    "precision": "fp32",
    "deterministic": True,
    "model": {},
    "loss": {
        "mef_weight": 2.0,
        "recon_weight": 5.0,
        "unsupervised_weight": 1.0,
        "texture_weight": 16.0,
        "ssim_weight": 10.0,
        "supervised_texture_weight": 10.0,
        "mff_l1_weight": 10.0,
        "mef_l1_weight": 1.0,
        "mef_ssim_weight": 2.0,
    },
    "optimizer": {"name": "adamw", "weight_decay": 0.05},
    "data": {
        "natural": {
            "dirs": ["natural/CSet5"],
            "dev_fraction": 0.2,
            "max_images": 3,
            "scale": [0.5, 1.0],
        },
        "unlabeled": [
            {
                "name": "mri-ct",
                "path": "mmf/mri-ct",
                "dirs": ["mri", "ct"],
                "dev_fraction": 0.2,
                "max_pairs": 4,
                "loss": {"ssim_weight": 40.0, "intensity_weight": 0.5},
            },
            {
                "name": "roadscene",
                "path": "ivf/roadscene",
                "dirs": ["ir", "vi"],
                "dev_fraction": 0.2,
                "max_pairs": 4,
            },
        ],
        "mef": {"illumination_stops": [0.0, 3.0], "random_order": True},
        "val_crop": 32,
        "val_max_pairs": 2,
    },
    "stage1": {
        "length": 3,
        "lr": 1.0e-3,
        "lr_decay_at": [2],
        "batch_mff": 1,
        "batch_mef": 1,
        "batch_unlabeled": 3,
        "crop_labeled": 32,
        "crop_unlabeled": 32,
        "grad_clip": 1.0,
        "faf_set": 2,
        "labeled_faf_set": 1,
        "train": ["encoder1", "encoder2", "decoder", "faf1", "faf2"],
        "loss": {"texture_weight": 8.0},
        "ema_decay": 0.5,
        "val_every": 3,
        "checkpoint_every": 3,
    },
    "stage2": {
        "length": 2,
        "lr": 1.0e-3,
        "batch_mff": 1,
        "batch_mef": 0,
        "batch_unlabeled": 2,
        "crop_labeled": 32,
        "crop_unlabeled": 32,
        "grad_clip": 0.5,
        "faf_set": 2,
        "train": ["faf2"],
        "init_from": "previous_last",
        "loss": {"ssim_weight": 3.0},
        "val_every": 2,
        "checkpoint_every": 2,
    },
}

# Logged keys that are wall-clock measurements, not results.
TIMING = ("seconds", "time")

GOLDEN_ROWS: list[dict] = [
    {
        "kind": "train",
        "stage": 1,
        "step": 1,
        "lr": 0.001,
        "mff_total": 23.942052841186523,
        "mff_ssim": 1.2638999223709106,
        "mff_recon": 2.6512513160705566,
        "mff_texture": 0.18777120113372803,
        "mff_l1": 0.7544186115264893,
        "mef_total": 23.96393585205078,
        "mef_ssim": 0.6769568920135498,
        "mef_recon": 3.863576889038086,
        "mef_texture": 0.21457867324352264,
        "mef_l1": 0.3330385684967041,
        "mef_mef_ssim": 0.7451350092887878,
        "unsup_total": 27.676761627197266,
        "unsup_intensity": 0.5836753845214844,
        "unsup_texture": 0.5613034963607788,
        "unsup_ssim": 0.9069511294364929,
        "unsup_recon": 2.52401065826416,
        "loss": 99.54669189453125,
        "grad_norm": 100211392512.0,
    },
    {
        "kind": "train",
        "stage": 1,
        "step": 2,
        "lr": 0.001,
        "mff_total": 15.195951461791992,
        "mff_ssim": 0.6320884823799133,
        "mff_recon": 1.8482004404067993,
        "mff_texture": 0.1943473070859909,
        "mff_l1": 0.3379388153553009,
        "mef_total": 19.489194869995117,
        "mef_ssim": 1.007708191871643,
        "mef_recon": 2.0736770629882812,
        "mef_texture": 0.433316707611084,
        "mef_l1": 1.7454593181610107,
        "mef_mef_ssim": 1.017237663269043,
        "unsup_total": 40.785125732421875,
        "unsup_intensity": 0.9447687268257141,
        "unsup_texture": 0.6330432891845703,
        "unsup_ssim": 1.1947884559631348,
        "unsup_recon": 2.068571090698242,
        "loss": 94.95946502685547,
        "grad_norm": 4431.00146484375,
    },
    {
        "kind": "train",
        "stage": 1,
        "step": 3,
        "lr": 0.0005,
        "mff_total": 95.59469604492188,
        "mff_ssim": 1.377311110496521,
        "mff_recon": 9.277456283569336,
        "mff_texture": 0.03543051332235336,
        "mff_l1": 4.747579097747803,
        "mef_total": 49.652503967285156,
        "mef_ssim": 1.0784753561019897,
        "mef_recon": 7.869273662567139,
        "mef_texture": 0.3850703835487366,
        "mef_l1": 3.949329137802124,
        "mef_mef_ssim": 0.7138128280639648,
        "unsup_total": 48.5347900390625,
        "unsup_intensity": 2.693098545074463,
        "unsup_texture": 0.37834084033966064,
        "unsup_ssim": 1.1949589252471924,
        "unsup_recon": 8.13511848449707,
        "loss": 243.4344940185547,
        "grad_norm": 5593.6943359375,
    },
    {
        "kind": "val",
        "stage": 1,
        "step": 3,
        "mff_loss": 129.0682373046875,
        "mff_psnr": 8.636488914489746,
        "mff_ssim": 0.7446318864822388,
        "mef_loss": 67.6385726928711,
        "mef_psnr": 8.636488914489746,
        "mef_ssim": 0.7446318864822388,
        "unsup_total": 31.957767486572266,
        "unsup_intensity": 5.770008087158203,
        "unsup_texture": 0.35150042176246643,
        "unsup_ssim": 0.9628909230232239,
        "unsup_recon": 10.997478485107422,
        "val_loss": 296.30316162109375,
    },
    {
        "kind": "train",
        "stage": 2,
        "step": 1,
        "lr": 0.001,
        "mff_total": 119.51318359375,
        "mff_ssim": 0.9466946125030518,
        "mff_recon": 11.284080505371094,
        "mff_texture": 0.1594967246055603,
        "mff_l1": 6.055111885070801,
        "unsup_total": 59.13636779785156,
        "unsup_intensity": 5.578826904296875,
        "unsup_texture": 0.4654043912887573,
        "unsup_ssim": 0.9910843968391418,
        "unsup_recon": 7.405688762664795,
        "loss": 178.64955139160156,
        "grad_norm": 863.4605102539062,
    },
    {
        "kind": "train",
        "stage": 2,
        "step": 2,
        "lr": 0.001,
        "mff_total": 64.9891586303711,
        "mff_ssim": 0.3624793291091919,
        "mff_recon": 10.224945068359375,
        "mff_texture": 0.029060598462820053,
        "mff_l1": 1.3211346864700317,
        "unsup_total": 38.999385833740234,
        "unsup_intensity": 1.7427778244018555,
        "unsup_texture": 0.29570746421813965,
        "unsup_ssim": 0.8633226156234741,
        "unsup_recon": 11.05511474609375,
        "loss": 103.98854064941406,
        "grad_norm": 122.78050994873047,
    },
    {
        "kind": "val",
        "stage": 2,
        "step": 2,
        "mff_loss": 71.11967468261719,
        "mff_psnr": 8.636488914489746,
        "mff_ssim": 0.7446318864822388,
        "mef_loss": 62.311248779296875,
        "mef_psnr": 8.636488914489746,
        "mef_ssim": 0.7446318864822388,
        "unsup_total": 23.183231353759766,
        "unsup_intensity": 1.4386361837387085,
        "unsup_texture": 0.3308696746826172,
        "unsup_ssim": 0.901277482509613,
        "unsup_recon": 10.997478485107422,
        "val_loss": 218.92539978027344,
    },
]
GOLDEN_CHECKSUM = 5549.913781090916


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    from tests.conftest import DATA

    if not DATA.is_dir():
        pytest.skip(f"shared data not found at {DATA}")
    folder = tmp_path_factory.mktemp("reference")
    raw = {**RECIPE, "data": {**RECIPE["data"], "root": str(DATA)}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    recipe = Recipe.from_file(folder / "recipe.yaml")
    result = train(recipe, run_dir=folder / "run")
    rows = [json.loads(line) for line in (folder / "run" / "log.jsonl").read_text().splitlines()]
    rows = [{k: v for k, v in row.items() if k not in TIMING} for row in rows]
    return rows, parameter_checksum(result.net)


@pytest.mark.data
@pytest.mark.slow
def test_losses_gradients_and_validation_match_the_reference(reference_run):
    rows, _ = reference_run
    assert [(r["kind"], r["stage"], r["step"]) for r in rows] == [
        (r["kind"], r["stage"], r["step"]) for r in GOLDEN_ROWS
    ]
    for row, golden in zip(rows, GOLDEN_ROWS, strict=True):
        assert set(row) == set(golden), (row["kind"], row["stage"], row["step"])
        for key, value in golden.items():
            # "kind" is a string; every other logged value is a number. The golden rows were
            # matched to 1e-5 by the restructured trainer at 2 threads on the machine that made
            # them; the float summation order follows the thread count and the CPU, and one
            # thread moved mff_ssim by 3.3e-4 at step 3, so later steps get 5e-3.
            expected = value if isinstance(value, str) else pytest.approx(value, rel=5e-3, abs=1e-6)
            assert row[key] == expected, (
                row["kind"],
                row["stage"],
                row["step"],
                key,
            )


@pytest.mark.data
@pytest.mark.slow
def test_the_trained_weights_match_the_reference(reference_run):
    _, checksum = reference_run
    # 1e-7 held at 2 threads on the machine that made it; one thread moved it by 1.5e-6.
    assert checksum == pytest.approx(GOLDEN_CHECKSUM, rel=2e-5)
