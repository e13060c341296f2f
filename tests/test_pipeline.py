"""Running a task: weights and the cached network, input checks, sizes, colour, files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusecli import pipeline
from fusecli.classical import with_source_detail
from fusecli.color import ColorPolicy, luminance
from fusecli.engine import PSLPT, decide_tiled, fuse_tiled, save_weights
from fusecli.errors import FuseError, ImageWriteError, PluginError, WeightsError
from fusecli.hookspecs import InputRole, TaskSpec
from fusecli.io import read_image, write_image
from fusecli.plugins import load_catalog

CATALOG = load_catalog(autoload=False)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_weights(PSLPT(), tmp_path_factory.mktemp("w") / "w.safetensors", {})


def test_sources_of_different_sizes_are_refused_or_resized() -> None:
    a, b = torch.rand(1, 3, 8, 10), torch.rand(1, 1, 6, 5)
    with pytest.raises(FuseError, match=r"b.png is 5x6 but a.png is 10x8.*resize=True") as info:
        pipeline.match_sizes([a, b], ["a.png", "b.png"], resize=False)
    assert info.value.hint == "resize" and "--" not in str(info.value)
    matched = pipeline.match_sizes([a, b], ["a.png", "b.png"], resize=True)
    assert matched[1].shape == (1, 1, 8, 10)
    assert float(matched[1].min()) >= 0.0 and float(matched[1].max()) <= 1.0


def test_fuse_sources_keeps_size_and_takes_colour_per_policy() -> None:
    net = PSLPT().eval()
    infrared, visible = torch.rand(1, 1, 20, 24), torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        fused = pipeline.fuse_sources(net, CATALOG.get("ivf").spec, [infrared, visible])
        grey = pipeline.fuse_sources(net, CATALOG.get("mff").spec, [infrared, infrared])
    assert fused.shape == (1, 3, 20, 24) and grey.shape == (1, 1, 20, 24)
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0
    with pytest.raises(FuseError, match="takes 2 input images") as info:
        pipeline.fuse_sources(net, CATALOG.get("ivf").spec, [infrared, visible, visible])
    assert info.value.hint == "sources"


def test_resolve_weights_without_shipped_weights_says_what_to_do(tmp_path: Path) -> None:
    spec = CATALOG.get("ivf").spec
    assert pipeline.resolve_weights(spec, tmp_path / "w.safetensors") == tmp_path / "w.safetensors"
    try:
        path = pipeline.resolve_weights(spec)
    except WeightsError as exc:
        assert exc.hint == "weights" and "weights file" in str(exc)
    else:
        assert path.is_file()


def test_a_network_opens_once_per_file_and_device_and_again_when_the_file_changes(
    tmp_path: Path,
) -> None:
    spec = CATALOG.get("ivf").spec
    path = save_weights(PSLPT(), tmp_path / "w.safetensors", {"note": "first"})
    first, opened = pipeline.open_network(spec, path, "cpu")
    assert opened == path and not first.training
    again, _ = pipeline.open_network(spec, str(path), torch.device("cpu"))
    assert again is first
    save_weights(PSLPT(), path, {"note": "second, a little longer"})
    changed, _ = pipeline.open_network(spec, path, "cpu")
    assert changed is not first and changed.weights_metadata["note"].startswith("second")
    with pytest.raises(WeightsError, match="does not exist"):
        pipeline.open_network(spec, tmp_path / "missing.safetensors")


def test_fuse_files_checks_count_and_output_before_opening_the_network(tmp_path: Path) -> None:
    spec = CATALOG.get("ivf").spec
    a = write_image(tmp_path / "a.png", torch.rand(1, 1, 16, 16)).path
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(FuseError, match="takes 2 input images"):
        pipeline.fuse_files(spec, [a, a, a], tmp_path / "o.png", weights=missing)
    (tmp_path / "o.png").write_bytes(b"old")
    with pytest.raises(ImageWriteError, match="already exists") as info:
        pipeline.fuse_files(spec, [a, a], tmp_path / "o.png", weights=missing)
    assert info.value.hint == "overwrite" and "--" not in str(info.value)


def test_fuse_files_reports_what_it_stored(tmp_path: Path, weights: Path) -> None:
    spec = CATALOG.get("ivf").spec
    ir = write_image(tmp_path / "ir.png", torch.rand(1, 1, 16, 24), bit_depth=16).path
    vi = write_image(tmp_path / "vi.png", torch.rand(1, 3, 16, 24)).path
    result = pipeline.fuse_files(spec, [ir, vi], tmp_path / "out.jpg", weights=weights)
    assert (result.width, result.height, result.channels) == (24, 16, 3)
    assert result.bit_depth == 8  # JPEG holds 8 bits, however deep the infrared image
    assert result.weights == weights and result.sources == (ir, vi)
    assert read_image(result.output).pixels.shape == (1, 3, 16, 24)


@pytest.mark.parametrize("name", sorted(CATALOG.tasks))
def test_every_registered_task_fuses_a_small_random_input(name: str) -> None:
    # Contract over every task: the real network, one colour and grey sources, odd size.
    spec = CATALOG.get(name).spec
    torch.manual_seed(0)
    net = PSLPT().eval()
    sources = [torch.rand(1, 3 if i == 0 else 1, 19, 23) for i in range(spec.min_inputs)]
    with torch.no_grad():
        fused = pipeline.fuse_sources(net, spec, sources)
    assert fused.shape[0] == 1 and fused.shape[-2:] == (19, 23) and fused.shape[1] in (1, 3)
    assert not torch.isnan(fused).any()
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0


EDGE_CASES = {
    "black": lambda shape: torch.zeros(shape),
    "white": lambda shape: torch.ones(shape),
    "grey": lambda shape: torch.full(shape, 0.5),
    "noise": lambda shape: torch.rand(shape),
    "one bright pixel": lambda shape: torch.zeros(shape).index_fill_(-1, torch.tensor([3]), 1.0),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
@pytest.mark.parametrize("name", sorted(CATALOG.tasks))
def test_the_shipped_weights_give_numbers_for_extreme_valid_inputs(name: str, case: str) -> None:
    # finished_output refuses NaN instead of hiding it, so valid inputs must never make any:
    # flat images (zero variance in every normalisation), saturated ones, and a size past the
    # task's global view so that path runs too.
    spec = CATALOG.get(name).spec
    net, _ = pipeline.open_network(spec)
    side = max(spec.global_view + 9, 19)
    torch.manual_seed(0)
    sources = [
        EDGE_CASES[case]((1, 3 if i == 0 else 1, side, side + 4)) for i in range(spec.min_inputs)
    ]
    with torch.no_grad():
        fused = pipeline.fuse_sources(net, spec, sources)  # raises InternalError on NaN
    assert fused.shape[-2:] == (side, side + 4)


@pytest.mark.parametrize("name", sorted(CATALOG.tasks))
def test_every_demo_makes_inputs_the_task_takes(name: str) -> None:
    spec = CATALOG.get(name).spec
    if spec.demo_inputs is None:
        pytest.skip(f"{name} has no demo")
    scene = torch.rand(1, 3, 24, 32)
    sources = list(spec.demo_inputs(scene))
    pipeline.check_input_count(spec, len(sources))
    for source in sources:
        assert source.shape[0] == 1 and source.shape[1] in (1, 3)
        assert source.shape[-2:] == (24, 32)
        assert float(source.min()) >= 0.0 and float(source.max()) <= 1.0


def _colour_stack(folder: Path, count: int, size=(48, 40)) -> list[Path]:
    """8-bit RGB frames, with a band that is grey in every frame (the plain-mean chroma)."""
    generator = torch.Generator().manual_seed(11)
    paths = []
    for index in range(count):
        frame = torch.rand(1, 3, *size, generator=generator)
        frame[..., :4, :] = frame[:, :1, :4, :]
        paths.append(write_image(folder / f"frame{index:02d}.png", frame).path)
    return paths


@pytest.mark.parametrize("tile_size", [None, 32])
@pytest.mark.parametrize("spill", [False, True])
def test_a_stack_read_frame_by_frame_fuses_as_one_held_in_memory(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch, tile_size, spill: bool
) -> None:
    # The reference is the former way: every frame read as a colour image and held, the
    # network inputs and chroma made from the full list.
    spec = CATALOG.get("mff").spec
    paths = _colour_stack(tmp_path, 10)
    net, _ = pipeline.open_network(spec, weights)
    pixels = [read_image(path).pixels for path in paths]
    luma = pipeline.network_inputs(spec, pixels)
    with torch.inference_mode():
        reference_map = decide_tiled(net, luma, spec.faf_set, tile_size=tile_size, precision="fp32")
    # mff composes its output from the sources' pixels by the network's cleaned decision,
    # which is also the map --save-map writes.
    reference_map = pipeline.clean_decision(reference_map)
    reference = pipeline.select_pixels(pixels, reference_map).clamp(0.0, 1.0)
    monkeypatch.setenv("FUSECLI_STACK_MEMORY_MB", "0" if spill else "1e6")
    stores = []
    monkeypatch.setattr(pipeline, "LuminanceStore", _recording(stores))
    result = pipeline.fuse_files(
        spec,
        paths,
        tmp_path / "out.tif",
        weights=weights,
        tile_size=tile_size,
        bit_depth=32,
        precision="fp32",
        source_map=tmp_path / "map.png",
    )
    assert [store.spilled for store in stores] == [spill]
    streamed = read_image(result.output).pixels
    assert streamed.shape == reference.shape == (1, 3, 48, 40)
    assert torch.allclose(streamed, reference, rtol=0, atol=1e-6)
    levels = torch.round(read_image(tmp_path / "map.png").pixels * 255).long()
    assert torch.equal(levels, torch.round(reference_map * 255 / 9).long())


@pytest.mark.parametrize("spill", [False, True])
def test_a_bracket_takes_its_finest_bands_from_the_sources_read_or_held(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch, spill: bool
) -> None:
    # mef composes "detail": the network's luminance with the sources' finest bands, in
    # memory (fuse_sources) and frame by frame from a store (fuse_files) alike.
    spec = CATALOG.get("mef").spec
    assert spec.compose == "detail"
    paths = _colour_stack(tmp_path, 3, size=(40, 48))
    net, _ = pipeline.open_network(spec, weights)
    pixels = [read_image(path).pixels for path in paths]
    luma = pipeline.network_inputs(spec, pixels)
    with torch.inference_mode():
        network_y = fuse_tiled(net, luma, spec.faf_set, precision="fp32")
        held = pipeline.fuse_sources(net, spec, pixels, precision="fp32")
    composed_y = with_source_detail(network_y, luma, pipeline.DETAIL_BANDS)
    reference = pipeline.restore_color(composed_y, pixels, spec.color).clamp(0.0, 1.0)
    assert torch.allclose(held, reference, rtol=0, atol=1e-5)
    assert not torch.allclose(composed_y, network_y, atol=1e-3)
    monkeypatch.setenv("FUSECLI_STACK_MEMORY_MB", "0" if spill else "1e6")
    result = pipeline.fuse_files(
        spec, paths, tmp_path / "out.tif", weights=weights, bit_depth=32, precision="fp32"
    )
    assert torch.allclose(read_image(result.output).pixels, held, rtol=0, atol=1e-5)


def _recording(stores: list) -> type:
    class Recording(pipeline.LuminanceStore):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            stores.append(self)

    return Recording


def test_an_unusable_stack_memory_setting_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FUSECLI_STACK_MEMORY_MB", "lots")
    with pytest.raises(FuseError, match="FUSECLI_STACK_MEMORY_MB='lots' is not a number"):
        pipeline.stack_memory_limit()
    monkeypatch.delenv("FUSECLI_STACK_MEMORY_MB")
    assert pipeline.stack_memory_limit() == pipeline.STACK_MEMORY_BYTES


def test_selection_keeps_each_sources_own_pixels_away_from_its_boundaries() -> None:
    generator = torch.Generator().manual_seed(3)
    sources = [torch.rand(1, 3, 60, 80, generator=generator) for _ in range(3)]
    indices = torch.zeros(1, 1, 60, 80, dtype=torch.int64)
    indices[..., 20:, :] = 1
    indices[..., 40:, 40:] = 2
    indices[..., 5, 5] = 2  # a speck where the network hesitated: outvoted by its neighbours
    fused = pipeline.select_pixels(sources, pipeline.clean_decision(indices))
    assert fused.shape == (1, 3, 60, 80)
    margin = pipeline.SELECT_MAJORITY // 2 + pipeline.SELECT_BLEND // 2
    assert torch.allclose(fused[..., :8, :8], sources[0][..., :8, :8])  # the speck is gone
    assert torch.allclose(fused[..., : 20 - margin, :], sources[0][..., : 20 - margin, :])
    assert torch.allclose(
        fused[..., 40 + margin :, 40 + margin :], sources[2][..., 40 + margin :, 40 + margin :]
    )
    # Across a boundary the weights blend and still sum to one: equal sources come out as is.
    same = [sources[0]] * 3
    assert torch.allclose(pipeline.select_pixels(same, indices), sources[0], atol=1e-6)


def test_grey_and_colour_sources_select_into_colour() -> None:
    grey, colour = torch.full((1, 1, 16, 16), 0.25), torch.full((1, 3, 16, 16), 0.75)
    indices = torch.zeros(1, 1, 16, 16, dtype=torch.int64)
    indices[..., 8:] = 1
    fused = pipeline.select_pixels([grey, colour], indices)
    assert fused.shape == (1, 3, 16, 16)
    assert torch.allclose(fused[..., 0], torch.full((1, 3, 16), 0.25))
    assert torch.allclose(fused[..., -1], torch.full((1, 3, 16), 0.75))


def test_multi_focus_output_is_made_of_its_sources_pixels(tmp_path: Path, weights: Path) -> None:
    # mff composes by selection: each output pixel blends the sources' own values, so it lies
    # between them in every channel (a decoded fusion would not).
    spec = CATALOG.get("mff").spec
    assert spec.compose == "select"
    paths = _colour_stack(tmp_path, 2)
    result = pipeline.fuse_files(spec, paths, tmp_path / "out.tif", weights=weights, bit_depth=32)
    fused = read_image(result.output).pixels
    a, b = (read_image(path).pixels for path in paths)
    assert (fused >= torch.minimum(a, b) - 1e-6).all() and (
        fused <= torch.maximum(a, b) + 1e-6
    ).all()


def _task_preprocessed_by(step) -> TaskSpec:
    return TaskSpec(
        name="custom",
        help="a task with its own preprocessing",
        roles=(InputRole("odd", "odd image", preprocessing=step), InputRole("plain", "image")),
        faf_set=2,
        color=ColorPolicy(mode="chroma_from", source=1),
    )


def test_a_plugins_preprocessing_gets_grey_and_colour_inputs() -> None:
    seen = []

    def log_scaled(image: torch.Tensor) -> torch.Tensor:
        seen.append(image.shape[1])
        return torch.log1p(255 * image.mean(dim=1, keepdim=True)) / torch.log1p(torch.tensor(255.0))

    spec = _task_preprocessed_by(log_scaled)
    for channels in (1, 3):
        source = torch.rand(1, channels, 8, 10)
        expected = log_scaled(source)
        assert torch.equal(pipeline.network_input(spec, 0, source), expected)
    assert seen == [1, 1, 3, 3]
    assert torch.equal(pipeline.network_input(spec, 1, source), luminance(source))


@pytest.mark.parametrize(
    ("step", "says"),
    [
        (lambda image: image, "shape (1, 3, 8, 10)"),
        (lambda image: image[:, :1] * 2, "values from"),
        (lambda image: image[:, :1] / 0, "NaN or infinite"),
        (lambda image: image[:, :1].numpy(), "a ndarray"),
        (lambda image: (image[:, :1] * 255).to(torch.uint8), "torch.uint8"),
    ],
)
def test_a_plugins_preprocessing_that_breaks_the_contract_is_named(step, says) -> None:
    with pytest.raises(PluginError) as caught:
        pipeline.network_input(_task_preprocessed_by(step), 0, torch.rand(1, 3, 8, 10) + 0.01)
    message = str(caught.value)
    assert "task 'custom', input 'odd'" in message and says in message
    assert "(1, 1, 8, 10) in [0, 1]" in message
