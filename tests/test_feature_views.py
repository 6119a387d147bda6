"""Feature-space views for features data without stored views (issue 18; u2cdr_bench/data/feature_views.py).

Each generator's statistics on a generated array against its docstring (mean kept, spread as documented,
neighbours against a naive cosine search), determinism per generator seed, the fallbacks and the record,
the warning line and the ``--feature-views`` errors of ``u2cdr-bench run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from u2cdr_bench.cli import main
from u2cdr_bench.data import feature_views as fv
from u2cdr_bench.data.registry import DataOptions, get_dataset
from u2cdr_bench.data.types import DomainSamples
from u2cdr_bench.errors import UserError
from u2cdr_bench.records import config_hash
from u2cdr_bench.runner import RunConfig, plan

N, D = 300, 6
SPREAD = np.array([0.5, 1.0, 2.0, 4.0, 0.25, 3.0])


def _features(seed: int = 0) -> torch.Tensor:
    """``[N, D]`` float32: a positive offset plus per-dimension spreads :data:`SPREAD`."""
    rng = np.random.default_rng(seed)
    return torch.tensor(5.0 + rng.normal(size=(N, D)) * SPREAD, dtype=torch.float32)


def _draws(gen: fv.FeatureView, x: torch.Tensor, repeats: int, seed: int = 7) -> torch.Tensor:
    """``[repeats, B, D]``: ``repeats`` views of the batch ``x`` drawn from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([gen(x, g) for _ in range(repeats)])


# ------------------------------------------------------------------------------------------ registry
def test_registry_names_default_and_unknown_name() -> None:
    assert fv.FEATURE_VIEWS.names() == ["noise", "dropout", "mix", "none"]
    assert fv.DEFAULT_FEATURE_VIEWS in fv.FEATURE_VIEWS
    assert fv.build_feature_views("none", _features()) is None
    with pytest.raises(UserError) as err:
        fv.check_feature_views("blur")
    assert str(err.value) == (
        "Unknown feature-view generator 'blur'; valid choices: dropout, mix, noise, none."
    )


# ------------------------------------------------------------------------------------------- noise
def test_noise_keeps_the_mean_and_adds_gamma_times_each_dimensions_std() -> None:
    x = _features()
    gen = fv.GaussianNoise(x)
    s = x.numpy().astype(np.float64).std(axis=0)  # naive population std per dimension
    np.testing.assert_allclose(gen.scale.numpy(), 1.0 * s, rtol=1e-5)
    batch = x[:40]
    views = _draws(gen, batch, 800).double()
    delta = views - batch.double()
    # mean kept: the average of 800 views is x within 4 standard errors per entry
    se = s / np.sqrt(800)
    assert (delta.mean(0).abs().numpy() < 4 * se).all()
    # spread: x~ - x has std gamma * s_d in every dimension (pooled over the batch and the draws)
    np.testing.assert_allclose(delta.reshape(-1, D).std(0).numpy(), s, rtol=0.03)
    # across the domain the spread grows to sqrt(1 + gamma^2) * s_d
    one = gen(x, torch.Generator().manual_seed(3)).double().numpy()
    np.testing.assert_allclose(one.std(0), np.sqrt(2.0) * s, rtol=0.12)


# ----------------------------------------------------------------------------------------- dropout
def test_dropout_zeros_p_of_the_entries_and_rescales_the_rest_exactly() -> None:
    x = _features()
    gen = fv.FeatureDropout(x)
    p = gen.p
    assert p == 0.4 and gen.describe() == {"generator": "dropout", "p": 0.4, "rescale": True}
    batch = x[:40]
    views = _draws(gen, batch, 800).double()
    xb = batch.double().expand_as(views)
    kept = views != 0
    assert abs(kept.double().mean().item() - (1 - p)) < 0.01  # 192,000 Bernoulli(0.6) draws
    torch.testing.assert_close(views[kept], xb[kept] / (1 - p))  # a kept entry is exactly x / (1 - p)
    # mean kept: E[x~] = x; Var[x~_d | x] = x_d^2 p / (1 - p)
    var = (batch.double() ** 2 * p / (1 - p)).numpy()
    assert (np.abs(views.mean(0).numpy() - batch.double().numpy()) < 4 * np.sqrt(var / 800)).all()
    np.testing.assert_allclose(views.var(0).numpy(), var, rtol=0.2)


def test_dropout_rejects_p_outside_0_1() -> None:
    with pytest.raises(ValueError, match="dropout probability"):
        fv.FeatureDropout(_features(), p=1.0)


# --------------------------------------------------------------------------------------------- mix
def _naive_knn(x: np.ndarray, k: int) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_mix_neighbours_are_the_naive_cosine_neighbours() -> None:
    x = _features()
    gen = fv.NeighbourMix(x)
    assert gen.table.shape == (N, 5)
    np.testing.assert_array_equal(gen.table, _naive_knn(x.numpy().astype(np.float64), 5))
    # a batch's rows are found in the table; a row the domain does not hold is searched
    np.testing.assert_array_equal(gen.neighbours(x[[7, 3, 7]]), gen.table[[7, 3, 7]])
    outsider = x[:1] * 1.0001 + 0.01
    unit = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    o = outsider.numpy()[0] / np.linalg.norm(outsider.numpy()[0])
    assert set(gen.neighbours(outsider)[0]) == set(np.argsort(-(unit @ o))[:5])


def test_mix_views_lie_between_a_sample_and_one_of_its_neighbours() -> None:
    x = _features()
    gen = fv.NeighbourMix(x)
    idx = torch.arange(60)
    view = gen(x[idx], torch.Generator().manual_seed(1)).double()
    xs = x.double()
    lams = []
    for i in idx.tolist():
        # x~ = (1 - lam) x_i + lam x_j for exactly one j among i's neighbours, with lam in [0.5, 1]
        fits = []
        for j in gen.table[i]:
            d = xs[j] - xs[i]
            lam = float((view[i] - xs[i]) @ d / (d @ d))
            if torch.allclose(view[i], xs[i] + lam * d, atol=1e-4):
                fits.append(lam)
        assert len(fits) >= 1, i
        lams.append(fits[0])
    assert min(lams) >= 0.5 - 1e-5 and max(lams) <= 1.0 + 1e-5
    assert 0.65 < np.mean(lams) < 0.85  # U(0.5, 1) has mean 0.75


def test_mix_keeps_the_domain_mean_and_shrinks_the_spread() -> None:
    x = _features()
    gen = fv.NeighbourMix(x)
    views = _draws(gen, x, 50).double()
    mean_x = x.double().mean(0)
    # domain mean: moved by far less than one standard deviation of any dimension
    assert ((views.mean((0, 1)) - mean_x).abs().numpy() < 0.1 * SPREAD).all()
    # interpolation between neighbours shrinks every dimension's spread
    ratio = views.std(1).mean(0).numpy() / x.double().std(0).numpy()
    assert (ratio < 1.0).all() and (ratio > 0.5).all()


def test_mix_on_a_tiny_domain_cuts_k_and_on_one_sample_returns_it() -> None:
    x = _features()[:3]
    assert fv.NeighbourMix(x).table.shape == (3, 2)
    one = fv.NeighbourMix(x[:1])
    torch.testing.assert_close(one(x[:1], torch.Generator().manual_seed(0)), x[:1])


# ------------------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", ["noise", "dropout", "mix"])
def test_each_generator_is_a_pure_function_of_its_generators_seed(name: str) -> None:
    x = _features()
    gen = fv.build_feature_views(name, x)
    batch = x[:32]
    a = gen(batch, torch.Generator().manual_seed(11))
    b = gen(batch, torch.Generator().manual_seed(11))
    c = gen(batch, torch.Generator().manual_seed(12))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    g = torch.Generator().manual_seed(11)
    first, second = gen(batch, g), gen(batch, g)
    torch.testing.assert_close(first, a, rtol=0, atol=0)
    assert not torch.equal(first, second)  # the generator's state advances
    assert a.shape == batch.shape and a.dtype == torch.float32
    # a second build on the same features gives the same views
    torch.testing.assert_close(
        fv.build_feature_views(name, x)(batch, torch.Generator().manual_seed(11)), a, rtol=0, atol=0
    )


# ------------------------------------------------------------------------------ attach and fallbacks
def _domain(**kw) -> DomainSamples:
    x = _features()
    return DomainSamples("d", x, np.zeros(N, dtype=np.int64), ("a",), "features", **kw)


def test_attach_only_to_features_without_views_and_what_the_record_says() -> None:
    bare = fv.attach_feature_views(_domain(), "mix")
    assert isinstance(bare.augment, fv.NeighbourMix)
    assert bare.info["feature_views"] == {"generator": "mix", "k": 5, "lam_low": 0.5, "lam_high": 1.0}
    g = torch.Generator().manual_seed(0)
    view = bare.unlabeled().view(torch.arange(8), g)
    assert not torch.equal(view, bare.x[:8])  # no longer the clean features
    stored = _domain(views=torch.zeros(2, N, D))
    assert fv.attach_feature_views(stored, "mix") is stored
    none = fv.attach_feature_views(_domain(), "none")
    assert none.augment is None and none.info["feature_views"] == {"generator": "none"}

    seen = fv.views_seen(("clean", "aug", "strong"), bare, bare)
    assert seen == {"aug": "feature-views mix", "strong": "fallback to the default view: feature-views mix"}
    assert fv.views_seen(("clean", "aug"), stored, stored) == {"aug": "stored views (2)"}
    assert fv.views_seen(("clean", "aug"), none, stored) == {
        "aug": "query: none (the clean inputs); gallery: stored views (2)"
    }
    strong = _domain(views=torch.zeros(2, N, D), extra_views={"strong": torch.zeros(1, N, D)})
    assert fv.views_seen(("clean", "aug", "strong"), strong, strong) == {
        "aug": "stored views (2)",
        "strong": "stored views (1)",
    }
    assert fv.views_seen(("clean",), bare, bare) == {}
    assert fv.views_warning("m", "pacs", {"aug": "stored views (2)", "strong": "stored views (1)"}) is None
    text = fv.views_warning("dn2a", "npz:f.npz", seen)
    assert text is not None and "\n" not in text
    assert text.startswith("dn2a on npz:f.npz has no stored augmented views") and "strong: fallback" in text


# ------------------------------------------------------------------------------------- planning
def _npz(path: Path, views: bool = False) -> Path:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray] = {"class_names": np.array(["ant", "bee", "cow"])}
    for k, name in enumerate(("zeta", "alpha")):
        y = np.repeat(np.arange(3), 12)
        arrays[f"features_{name}"] = (rng.normal(size=(36, 8)) + 3 * np.eye(3, 8)[y] + k).astype(np.float32)
        arrays[f"labels_{name}"] = y
        if views:
            arrays[f"views_{name}"] = rng.normal(size=(2, 36, 8)).astype(np.float32)
    np.savez(path, **arrays)
    return path


def test_plan_sets_the_generator_only_where_views_are_missing(tmp_path: Path) -> None:
    bare = f"npz:{_npz(tmp_path / 'bare.npz')}"
    full = f"npz:{_npz(tmp_path / 'full.npz', views=True)}"
    assert get_dataset(bare).extra["stored_views"] == {"zeta": False, "alpha": False}
    opts = DataOptions()
    assert {c.feature_views for c in plan("cds", bare, "close-set", None, [2024], opts)} == {"noise"}
    mixed = plan("cds", bare, "close-set", None, [2024], DataOptions(feature_views="mix"))
    assert {c.feature_views for c in mixed} == {"mix"}
    assert all(c.feature_views is None for c in plan("cds", full, "close-set", None, [2024], opts))
    assert all(c.feature_views is None for c in plan("pretrained", bare, "close-set", None, [2024], opts))
    assert all(c.feature_views is None for c in plan("uem", "digits", "close-set", None, [2024], opts))
    with pytest.raises(UserError, match="Unknown feature-view generator 'x'"):
        plan("cds", "digits", "close-set", None, [2024], DataOptions(feature_views="x"))
    # real images: views are stored unless --n-views 0
    pacs = get_dataset("pacs")
    assert fv.has_stored_views(pacs, "photo", DataOptions())
    assert not fv.has_stored_views(pacs, "photo", DataOptions(n_views=0))
    assert fv.has_stored_views(pacs, "photo", DataOptions(n_views=0, mode="finetune"))


def test_configs_without_a_generator_keep_their_hashes() -> None:
    fixture = Path(__file__).parent / "fixtures" / "records" / "9a1384f97ca16e04.json"
    rec = json.loads(fixture.read_text())
    cfg = RunConfig(**rec["config"])
    assert "feature_views" not in cfg.as_dict()
    assert config_hash(cfg.as_dict()) == rec["config_hash"] == fixture.stem
    with_gen = RunConfig(**{**rec["config"], "feature_views": "noise"})
    assert with_gen.as_dict()["feature_views"] == "noise"
    assert config_hash(with_gen.as_dict()) != rec["config_hash"]


# ---------------------------------------------------------------------------------------------- CLI
def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_npz_run_without_views_records_the_generator_and_warns_once(tmp_path: Path, capsys) -> None:
    path = _npz(tmp_path / "bare.npz")
    out = tmp_path / "runs"
    args = ["run", "--method", "cds", "--protocol", "close-set", "--dataset", f"npz:{path}"]
    args += ["--epochs-scale", "0.02", "--out", str(out)]
    code, _, err = _run(args, capsys)
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, err  # two pairs, one warning
    recs = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert len(recs) == 2
    for rec in recs:
        assert rec["config"]["feature_views"] == fv.DEFAULT_FEATURE_VIEWS
        for side in ("query", "gallery"):
            assert rec["data_info"][side]["feature_views"] == {"generator": "noise", "gamma": 1.0}
        assert rec["method_info"]["views_seen"] == {"aug": "feature-views noise"}
        assert warnings[0] == f"warning: {rec['method_info']['views_warning']}"
        assert "feature_views" in " ".join(rec["code"]["modules"])

    # --quiet silences the line; the record still carries it
    code, _, err = _run([*args, "--feature-views", "none", "--quiet", "--out", str(tmp_path / "q")], capsys)
    assert code == 0 and "warning:" not in err, err
    rec = json.loads(next((tmp_path / "q").glob("*.json")).read_text())
    assert rec["config"]["feature_views"] == "none"
    assert rec["method_info"]["views_seen"] == {"aug": "none (the clean inputs)"}
    assert "aug: none (the clean inputs)" in rec["method_info"]["views_warning"]


def test_npz_run_with_stored_views_is_unchanged(tmp_path: Path, capsys) -> None:
    path = _npz(tmp_path / "full.npz", views=True)
    args = ["run", "--method", "cds", "--protocol", "close-set", "--dataset", f"npz:{path}"]
    args += ["--pairs", "zeta:alpha", "--epochs-scale", "0.02", "--out", str(tmp_path / "r")]
    code, _, err = _run([*args, "--feature-views", "mix"], capsys)
    assert code == 0 and "warning:" not in err, err
    rec = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert "feature_views" not in rec["config"] and "feature_views" not in rec["data_info"]["query"]
    assert rec["method_info"]["views_seen"] == {"aug": "stored views (2)"}
    assert "views_warning" not in rec["method_info"]
    assert not any("feature_views" in m for m in rec["code"]["modules"])


@pytest.mark.parametrize("name", ["blur", "Noise", ""])
def test_bad_feature_views_name_is_one_error_line(name: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    code, stdout, err = _run(["run", "--method", "cds", "--feature-views", name, "--out", str(out)], capsys)
    assert code == 2 and stdout == ""
    assert err == (
        f"error: Unknown feature-view generator '{name}'; valid choices: dropout, mix, noise, none.\n"
    )
    assert not out.exists()


def test_run_help_names_every_generator_and_the_default(capsys) -> None:
    from typer.testing import CliRunner

    from u2cdr_bench.cli import app

    text = " ".join(CliRunner().invoke(app, ["run", "--help"], prog_name="u2cdr-bench").stdout.split())
    assert "--feature-views NAME" in text
    assert "noise, dropout, mix or none" in text
    assert f"(default: {fv.DEFAULT_FEATURE_VIEWS};" in text
