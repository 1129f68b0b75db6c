"""Counter-based per-sample random streams."""

from __future__ import annotations

import torch

from robustlit.rng import hash32, normal, randint, sample_seeds, uniform


def test_streams_depend_only_on_seed_id_and_counter():
    seeds = sample_seeds(7, torch.arange(50))
    whole = uniform(seeds, (3, 4), counter=5)
    assert torch.equal(whole[10:20], uniform(sample_seeds(7, torch.arange(10, 20)), (3, 4), counter=5))
    assert not torch.equal(whole, uniform(seeds, (3, 4), counter=6))
    assert not torch.equal(whole, uniform(sample_seeds(7, torch.arange(50), stream=1), (3, 4), counter=5))
    assert not torch.equal(whole, uniform(sample_seeds(8, torch.arange(50)), (3, 4), counter=5))


def test_distributions_have_the_right_moments():
    seeds = sample_seeds(0, torch.arange(20000))
    u = uniform(seeds, (5,))
    assert float(u.min()) >= 0 and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.01 and abs(float(u.var()) - 1 / 12) < 0.005
    z = normal(seeds, (5,))
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    k = randint(seeds, 6, (5,))
    counts = torch.bincount(k.flatten(), minlength=6).float() / k.numel()
    assert torch.allclose(counts, torch.full((6,), 1 / 6), atol=0.01)
    bounded = randint(seeds[:3], torch.tensor([1, 2, 3]), (1000,))
    assert bounded.amax(dim=1).tolist() == [0, 1, 2]


def test_uniform_draws_in_float32_never_round_to_one():
    assert float(uniform(sample_seeds(0, torch.arange(100000)), (10,)).max()) < 1.0


def test_hash_is_a_bijection_on_a_sample_and_stays_in_32_bits():
    values = hash32(torch.arange(1 << 16))
    assert values.unique().numel() == 1 << 16
    assert int(values.min()) >= 0 and int(values.max()) < 2**32
