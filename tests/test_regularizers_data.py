"""Data-level regularizers: CutMix, Manifold Mixup, AugMix (with JSD), RandAugment and colour jitter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from robustlit.callbacks import AugMix, ColorJitter, CutMix, ManifoldMixup, RandAugment, cutmix_batch, cutmix_box
from robustlit.losses import js_divergence
from robustlit.module import StepContext
from tests.regularizer_nets import PlainTinyNet, TinyNet, batch, loader, trainer


def test_cutmix_targets_sum_to_one_and_match_the_pasted_area():
    callback = CutMix(cutmix_alpha=1.0, seed=0)
    model = TinyNet()
    callback.setup(None, model, "fit")
    # each image is constant and equal to its index, so pixels reveal their source
    x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 8, 8).contiguous()
    y = torch.arange(8) % 3
    seen_boxes = set()
    for _ in range(5):
        mixed_x, mixed_y = callback.transform(StepContext(module=model, batch_idx=0, inputs=x, targets=y))
        torch.testing.assert_close(mixed_y.sum(dim=1), torch.ones(8))
        for i in range(8):
            own = (mixed_x[i] == i).float().mean()
            partner_value = mixed_x[i][mixed_x[i] != i]
            if partner_value.numel() == 0:  # empty box: plain one-hot target
                torch.testing.assert_close(mixed_y[i], torch.eye(3)[y[i]])
                continue
            partner = int(partner_value[0])
            expected = own * torch.eye(3)[y[i]] + (1 - own) * torch.eye(3)[y[partner]]
            torch.testing.assert_close(mixed_y[i], expected)
        seen_boxes.add(tuple((mixed_x[0, 0] != 0).nonzero().flatten().tolist()))
    assert len(seen_boxes) > 1  # the box moves between steps


def test_cutmix_box_has_the_area_of_one_minus_lambda_away_from_the_border():
    rng = np.random.default_rng(0)
    for lam in (0.2, 0.5, 0.9):
        areas = []
        for _ in range(200):
            top, bottom, left, right = cutmix_box(64, 64, lam, rng)
            areas.append((bottom - top) * (right - left) / 64**2)
        # clipping at the border only shrinks boxes; the largest ones reach the nominal area
        assert max(areas) == pytest.approx(1 - lam, abs=0.06)
    x, y = torch.rand(2, 1, 4, 4), torch.eye(2)
    mixed, targets = cutmix_batch(x, y, (1, 3, 0, 2), torch.tensor([1, 0]))
    torch.testing.assert_close(mixed[0, :, 1:3, 0:2], x[1, :, 1:3, 0:2])
    torch.testing.assert_close(targets[0], torch.tensor([0.75, 0.25]))


def test_cutmix_on_a_plain_module_and_resume_state():
    model = PlainTinyNet()
    trainer([CutMix(cutmix_alpha=1.0, seed=1)], batches=1).fit(model, loader())
    _, targets = model.seen[0]
    assert targets.shape == (8, 3) and torch.allclose(targets.sum(1), torch.ones(8))
    first = CutMix(seed=3)
    first.setup(None, TinyNet(), "fit")
    ctx = StepContext(module=TinyNet(), batch_idx=0, inputs=torch.rand(4, 3, 8, 8), targets=torch.tensor([0, 1, 2, 0]))
    first.transform(ctx)
    state = first.state_dict()
    expected = first.transform(ctx)
    resumed = CutMix()
    resumed.load_state_dict(state)
    resumed.setup(None, TinyNet(), "fit")
    got = resumed.transform(ctx)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_manifold_mixup_mixes_the_chosen_layer_output_once():
    callback = ManifoldMixup(layers=["net.2"], mixup_alpha=1.0, seed=0)
    model = TinyNet().eval()
    callback.setup(None, model, "fit")
    x, y = batch()
    recorded = []
    model.net[3].register_forward_hook(lambda m, args, out: recorded.append(args[0].detach().clone()))
    loss = model.robust_step([x, y], 0)["loss"]
    hidden = model.net[:3](x)
    # replay the draws: coin for prob, layer index, λ, permutation
    rng = np.random.default_rng(0)
    rng.random()
    rng.integers(1)
    lam = float(rng.beta(1.0, 1.0))
    permutation = torch.from_numpy(rng.permutation(8))
    torch.testing.assert_close(recorded[0], lam * hidden + (1 - lam) * hidden[permutation])
    logits, targets = model.seen[0]
    onehot = torch.eye(3)[y]
    torch.testing.assert_close(targets, lam * onehot + (1 - lam) * onehot[permutation])
    torch.testing.assert_close(loss, -(targets * logits.log_softmax(1)).sum(1).mean())
    model(x)  # the hook fired once and is gone
    torch.testing.assert_close(recorded[-1], hidden)


def test_manifold_mixup_trains_and_rejects_unknown_layers():
    model = TinyNet()
    fit = trainer([ManifoldMixup(layers=["input", "net.2"], seed=0)], batches=2)
    fit.fit(model, loader())
    assert all(torch.allclose(t.sum(1), torch.ones(8)) for _, t in model.seen)
    with pytest.raises(MisconfigurationException, match=r"layers \['net.9'\] are not submodules"):
        trainer([ManifoldMixup(layers=["net.9"])], batches=1).fit(TinyNet(), loader())


def test_augmix_jsd_term_is_js_of_clean_and_two_views():
    callback = AugMix(jsd_weight=12.0)
    model = TinyNet().eval()
    callback.setup(None, model, "fit")
    x, y = batch()
    torch.manual_seed(0)
    loss = model.robust_step([x, y], 0)["loss"]
    torch.manual_seed(0)
    first, second = callback.augment(x), callback.augment(x)
    assert not torch.equal(first, second) and first.min() >= 0 and first.max() <= 1
    expected = torch.nn.functional.cross_entropy(model(x), y) + 12.0 * js_divergence(model(x), model(first),
                                                                                       model(second))
    torch.testing.assert_close(loss, expected)
    callback.teardown(None, model, "fit")
    assert model.registered_names == []


def test_augmix_without_jsd_augments_a_plain_module_and_jsd_needs_robust_module():
    model = PlainTinyNet()
    trainer([AugMix(jsd_weight=0.0)], batches=1).fit(model, loader())
    x, _ = model.seen[0]
    assert x.shape == (8, 3, 8, 8) and not torch.equal(x, batch(16)[0][:8])
    with pytest.raises(MisconfigurationException, match="RobustModule"):
        trainer([AugMix(jsd_weight=12.0)], batches=1).fit(PlainTinyNet(), loader())


@pytest.mark.parametrize("callback", [RandAugment(num_ops=2, magnitude=9), ColorJitter(style=0.2)],
                         ids=["randaugment", "color_jitter"])
def test_image_augmentations_change_each_image_separately(callback):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8).expand(6, 3, 8, 8).contiguous()
    out = callback.augment(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 1  # parameters drawn per image
    model = TinyNet()
    trainer([callback], batches=1).fit(model, loader())
    assert len(model.seen) == 1


def test_color_jitter_style_sets_channel_statistics():
    callback = ColorJitter(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, style=0.5)
    torch.manual_seed(0)
    x = 0.25 + 0.5 * torch.rand(4, 3, 16, 16)
    torch.manual_seed(1)
    out = callback.jitter_style(x)
    torch.manual_seed(1)
    mean, std = x.mean(dim=(2, 3), keepdim=True), x.std(dim=(2, 3), keepdim=True)
    new_std = std * (1 + 0.5 * torch.randn_like(std))
    new_mean = mean * (1 + 0.5 * torch.randn_like(mean))
    torch.testing.assert_close(out, ((x - mean) / std * new_std + new_mean).clamp(0, 1))


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: CutMix(cutmix_alpha=0), "mixup_alpha > 0"),
        (lambda: ManifoldMixup(layers=[]), "at least one layer"),
        (lambda: AugMix(severity=11), "1 <= severity <= 10"),
        (lambda: AugMix(chain_depth=0), "chain_depth >= 1"),
        (lambda: RandAugment(magnitude=31), "magnitude < num_magnitude_bins"),
        (lambda: ColorJitter(hue=0.7), "0 <= hue <= 0.5"),
        (lambda: ColorJitter(style=-1), "style >= 0"),
    ],
)
def test_data_regularizers_validate_arguments(factory, message):
    with pytest.raises(MisconfigurationException, match=message):
        factory()
