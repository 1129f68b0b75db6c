"""OOD detectors: formulas, streaming fits equal to one-pass fits, and separation on a toy model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from robustlit.errors import ConfigError
from robustlit.metrics import auroc
from robustlit.ood import (
    DETECTORS,
    KNN,
    MSP,
    ODIN,
    Energy,
    FeatureExtractor,
    Mahalanobis,
    MaxLogit,
    ReAct,
    ViM,
    build_detector,
)
from robustlit.ood.streaming import FixedBlocks, Reservoir

DIM, CLASSES = 8, 4


def toy_model() -> nn.Module:
    """A hand-set classifier of 8-d points: class k is the cluster at 4·e_k (k < 4), logit_k = x_k."""
    hidden = nn.Linear(DIM, 2 * DIM, bias=False)
    head = nn.Linear(2 * DIM, CLASSES, bias=False)
    with torch.no_grad():
        hidden.weight.copy_(torch.cat([torch.eye(DIM), -torch.eye(DIM)]))  # h = [relu(x), relu(-x)]
        head.weight.zero_()
        head.weight[:, :CLASSES] = torch.eye(CLASSES)
        head.weight[:, DIM : DIM + CLASSES] = -torch.eye(CLASSES)
    return nn.Sequential(hidden, nn.ReLU(), head).eval()


def toy_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % CLASSES
    points = 0.5 * torch.randn(n, DIM, generator=generator)
    points[torch.arange(n), labels] += 4.0
    return points, labels


@torch.no_grad()
def extract(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return FeatureExtractor(model)(x)


def test_every_detector_separates_noise_from_in_distribution_points():
    model = toy_model()
    train, test = toy_data(400, 0), toy_data(200, 1)
    noise = torch.randn(200, DIM, generator=torch.Generator().manual_seed(2))  # no cluster: around the origin
    # one large activation in 16 per point: ReAct must clip above it, ViM keep the 4 class directions
    settings = {"knn": {"k": 5}, "odin": {"epsilon": 0.01}, "vim": {"dim": CLASSES}, "react": {"percentile": 99}}
    for name in DETECTORS:
        options = settings.get(name, {})
        detector = build_detector({"name": name, **options}, model).fit([train])
        assert auroc(detector.score(test[0]), detector.score(noise)) > 0.95, name


def test_logit_scores_follow_their_formulas():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    identity = nn.Identity()
    torch.testing.assert_close(MSP(identity).score_outputs(None, logits), logits.softmax(1).max(1).values)
    torch.testing.assert_close(MaxLogit(identity).score_outputs(None, logits), torch.tensor([2.0, 0.5]))
    expected = 2.0 * torch.log(torch.exp(logits / 2.0).sum(1))
    torch.testing.assert_close(Energy(identity, temperature=2.0).score_outputs(None, logits), expected)


def test_odin_without_perturbation_is_temperature_scaled_msp_and_the_step_raises_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(16, 6)
    plain = ODIN(model, temperature=10.0, epsilon=0.0).score(x)
    torch.testing.assert_close(plain, (model(x) / 10.0).softmax(1).max(1).values.detach())
    stepped = ODIN(model, temperature=10.0, epsilon=0.01).score(x)
    assert bool((stepped >= plain - 1e-7).all()) and bool((stepped > plain).any())
    with pytest.raises(TypeError, match="call score"):
        ODIN(model).score_outputs(None, torch.zeros(1, 3))


def test_mahalanobis_matches_the_direct_formula():
    model = toy_model()
    x, y = toy_data(200, 0)
    detector = Mahalanobis(model).fit([(x, y)])
    features = extract(model, x)[0].double().numpy()
    means = np.stack([features[y.numpy() == c].mean(0) for c in range(CLASSES)])
    centered = features - means[y.numpy()]
    precision = np.linalg.pinv(centered.T @ centered / len(features), hermitian=True)
    query = extract(model, x[:7])[0].double().numpy()
    expected = -np.min([np.einsum("nd,de,ne->n", query - m, precision, query - m) for m in means], axis=0)
    np.testing.assert_allclose(detector.score(x[:7]).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_knn_matches_brute_force_on_the_whole_bank():
    model = toy_model()
    x, y = toy_data(120, 0)
    detector = KNN(model, k=3).fit([(x, y)], limit=100)
    bank = nn.functional.normalize(extract(model, x[:100])[0], dim=1)
    query = nn.functional.normalize(extract(model, x[100:])[0], dim=1)
    distances = torch.cdist(query.double(), bank.double())
    expected = -distances.sort(dim=1).values[:, 2]
    torch.testing.assert_close(detector.score(x[100:]).double(), expected, atol=1e-5, rtol=0)


def _fit_in_chunks(detector, features, logits, labels, chunk):
    detector.start_fit()
    for start in range(0, len(labels), chunk):
        stop = start + chunk
        detector.partial_fit(features[start:stop], logits[start:stop], labels[start:stop])
    detector.finish_fit()
    return detector


@pytest.mark.parametrize("make", [
    lambda m: Mahalanobis(m, block_size=64),
    lambda m: KNN(m, k=5, max_bank=50, seed=3),
    lambda m: ViM(m, dim=4, max_samples=60, block_size=64),
    lambda m: ReAct(m, max_samples=60),
], ids=["mahalanobis", "knn", "vim", "react"])
def test_streamed_fit_is_identical_to_one_pass(make):
    model = toy_model()
    x, y = toy_data(300, 0)
    features, logits = extract(model, x)
    one_pass = _fit_in_chunks(make(model), features, logits, y, chunk=300)
    queries = extract(model, toy_data(30, 1)[0])
    reference = one_pass.score_outputs(*queries)
    for chunk in (1, 7, 64, 299):
        streamed = _fit_in_chunks(make(model), features, logits, y, chunk=chunk)
        assert torch.equal(streamed.score_outputs(*queries), reference), chunk


def test_knn_bank_is_bounded_and_react_clip_is_the_percentile():
    model = toy_model()
    x, y = toy_data(300, 0)
    knn = KNN(model, k=5, max_bank=40).fit([(x, y)])
    assert knn.bank.shape == (40, 2 * DIM)
    react = ReAct(model, percentile=90, max_samples=1000).fit([(x, y)])
    features = extract(model, x)[0].numpy()
    assert react.clip == pytest.approx(float(np.percentile(features, 90)), rel=1e-6)


def test_streaming_helpers():
    seen = []
    blocks = FixedBlocks(5, lambda a, b: seen.append((a.tolist(), b.tolist())))
    blocks.add(torch.arange(3), torch.arange(3) * 10)
    blocks.add(torch.arange(3, 11), torch.arange(3, 11) * 10)
    blocks.flush()
    assert [a for a, _ in seen] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10]]
    assert seen[0][1] == [0, 10, 20, 30, 40]
    reservoir = Reservoir(100, seed=0)
    for chunk in torch.arange(10000.0)[:, None].split(999):
        reservoir.add(chunk)
    kept = reservoir.rows.flatten()
    assert len(kept) == 100 and bool((kept.diff() > 0).all())  # a subsample, in stream order
    assert 3000 < float(kept.mean()) < 7000  # spread over the whole stream, not its start


def test_feature_extractor_layers_and_errors(tmp_path):
    model = toy_model()
    features, logits = FeatureExtractor(model, layer="1")(torch.randn(3, DIM))
    assert features.shape == (3, 2 * DIM) and logits.shape == (3, CLASSES)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    pooled, _ = FeatureExtractor(conv, layer="1")(torch.rand(2, 3, 6, 6))
    assert pooled.shape == (2, 4)  # 4-D activations are averaged over space
    with pytest.raises(ConfigError, match=r"layer='nope' is not a module"):
        FeatureExtractor(model, layer="nope")
    with pytest.raises(ConfigError, match="has no nn.Linear head"):
        FeatureExtractor(nn.Sequential(nn.Flatten()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; TorchScript files still exist
        scripted = torch.jit.script(model)
    with pytest.raises(ConfigError, match="TorchScript"):
        Mahalanobis(scripted)
    with pytest.raises(ConfigError, match="leave its layer unset"):
        ViM(model, layer="1")
    with pytest.raises(ConfigError, match="unknown OOD detector 'nope'"):
        build_detector("nope", model)
    with pytest.raises(ConfigError, match="bad options"):
        build_detector({"name": "msp", "k": 3}, model)
    with pytest.raises(RuntimeError, match=r"needs fit\(id_loader\)"):
        KNN(model, k=1).score(torch.randn(2, DIM))
