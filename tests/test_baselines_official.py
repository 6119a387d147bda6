"""The baselines' official configurations (issue 11): per-dataset method profiles, the rule that features
mode keeps the shared schedule, the official values each method pins, the BatchNorm forward mode of every
method, the learning-rate schedules and parameter groups, CoDA's memory from augmented views, DGDIR's feature
space, DARL without its extra loss, and tllib's DANN discriminator. docs/baselines.md lists the sources."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from u2cdr_bench.baselines.dgdir import DGDIR
from u2cdr_bench.baselines.ucdir import encode_keys
from u2cdr_bench.blocks.fourier import phase_only_image
from u2cdr_bench.blocks.grl import DomainClassifier, DomainDiscriminator
from u2cdr_bench.data.registry import dataset_names, get_dataset
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.errors import UserError
from u2cdr_bench.methods import FitContext, get_method, method_names
from u2cdr_bench.methods.base import METHOD_PROFILES, SCHEDULE_KEYS
from u2cdr_bench.methods.common import SCHEDULES, EncoderMethod
from u2cdr_bench.nets import MLPHead, make_encoder_factory
from u2cdr_bench.training import inverse_lr, scheduled_lr

D_IN = 16


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def features_pair(n: int = 40, seed: int = 0) -> tuple[UnlabeledDomain, UnlabeledDomain]:
    """Two small feature-mode domains whose stored views differ from the clean inputs."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, off in (("A", 0.0), ("B", 2.0)):
        x = torch.randn(n, D_IN, generator=g) + off
        views = x.unsqueeze(0) + 0.5 * torch.randn(3, n, D_IN, generator=g)
        out.append(UnlabeledDomain(name, x, "features", views=views))
    return out[0], out[1]


def ctx(
    profile: str = "features",
    method_profile: str | None = None,
    num_classes=(3, 3),
    scale: float = 0.05,
    factory=None,
    input_kind: str = "features",
    input_shape: tuple[int, ...] = (D_IN,),
) -> FitContext:
    return FitContext(
        seed=0,
        encoder_factory=factory or make_encoder_factory("features", (D_IN,), out_dim=8, hidden=16),
        input_kind=input_kind,
        input_shape=input_shape,
        epochs_scale=scale,
        profile=profile,
        method_profile=method_profile,
        num_classes=num_classes,
    )


class BNEncoder(nn.Module):
    """A trainable "backbone" with BatchNorm followed by a head, like a finetune encoder in miniature."""

    def __init__(self, d_in: int = D_IN, out_dim: int = 8) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(d_in, 12), nn.BatchNorm1d(12), nn.ReLU())
        self.head = MLPHead(12, 16, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


# ----- the per-dataset method profile --------------------------------------------------------------------
def test_every_built_in_dataset_names_an_official_configuration() -> None:
    want = {
        "office31": "office31",
        "officehome": "officehome",
        "domainnet": "domainnet",
        "pacs": "domainnet",
        "digits": "domainnet",
    }
    assert {n: get_dataset(n).method_profile for n in dataset_names()} == want
    assert set(want.values()) <= set(METHOD_PROFILES)


@pytest.mark.parametrize("name", method_names())
def test_every_method_table_uses_known_keys_and_resolves(name: str) -> None:
    cls = get_method(name)
    assert set(cls.dataset_profiles) <= set(METHOD_PROFILES)
    for profile in ("paper", "digits", "features"):
        for mp in (None, *METHOD_PROFILES):
            cls.hparams_for(profile, mp)  # an unknown key in a table would raise here


class _Toy(EncoderMethod):
    name = "toy"
    defaults: ClassVar[dict[str, Any]] = {"epochs": 5, "w": 1.0}
    dataset_profiles: ClassVar[dict[str, dict[str, Any]]] = {
        "officehome": {"lr": 0.5, "epochs": 9, "w": 0.25}
    }

    def fit(self, domain_a, domain_b) -> None:  # pragma: no cover - never trained
        raise NotImplementedError


def test_paper_takes_every_official_value_other_profiles_only_the_relative_ones() -> None:
    paper = _Toy.hparams_for("paper", "officehome")
    assert (paper["lr"], paper["epochs"], paper["w"]) == (0.5, 9, 0.25)
    feats = _Toy.hparams_for("features", "officehome")
    assert (feats["lr"], feats["epochs"], feats["w"]) == (SCHEDULES["features"]["lr"], 5, 0.25)
    assert {"lr", "batch_size", "epochs", "lr_schedule", "nesterov"} <= SCHEDULE_KEYS
    assert _Toy.hparams_for("features", "officehome", {"w": 2.0})["w"] == 2.0  # the user's value wins
    assert _Toy.hparams_for("features", None)["w"] == 1.0  # no key (custom data): the defaults
    with pytest.raises(UserError):
        _Toy.hparams_for("paper", "officehome", {"nope": 1})


def test_ucdir_takes_the_script_of_the_dataset() -> None:
    ucdir = get_method("ucdir")
    keys = ("cwcon_weightsature", "selfentro_temp", "selfentro_weight", "distofdist_weight")
    office_home = (0.5, 0.01, 1.0, 0.5)  # scripts/office-home.sh ll. 19, 22, 23, 25
    domainnet = (1.0, 0.1, 0.5, 0.1)  # scripts/domainnet.sh ll. 19, 22, 23, 25
    for profile in ("paper", "features", "digits"):
        for mp, want in (("officehome", office_home), ("office31", office_home), ("domainnet", domainnet)):
            hp = ucdir.hparams_for(profile, mp)
            assert tuple(hp[k] for k in keys) == want, (profile, mp)
    assert ucdir.hparams_for("paper", "officehome")["distofdist_temp"] == 0.01  # builder.py l. 287
    assert ucdir.hparams_for("features", "domainnet")["distofdist_temp"] == 0.01
    assert ucdir.hparams_for("digits", "domainnet")["distofdist_temp"] == 0.1  # from-scratch exception


def test_coda_official_schedule_and_cluster_counts() -> None:
    coda = get_method("coda")
    hp = coda.hparams_for("paper", "officehome")
    assert (hp["lr"], hp["lr_schedule"], hp["batch_size"], hp["epochs"], hp["weight_decay"]) == (
        3e-3,
        "constant",
        16,
        20,
        1e-5,
    )
    assert hp["lr"] * hp["head_lr_mult"] == pytest.approx(1e-4)  # network.py ll. 447-456
    assert hp["memory_momentum"] == 0.95 and hp["memory_init"] == "view" and hp["joint_forward"] is False
    got = {mp: coda.hparams_for("paper", mp)["cluster_num"] for mp in METHOD_PROFILES}
    assert got == {"office31": 50, "officehome": 100, "domainnet": 7}
    feats = coda.hparams_for("features", "domainnet")
    assert (feats["lr"], feats["batch_size"], feats["lr_schedule"], feats["cluster_num"]) == (
        0.01,
        64,
        "cosine",
        7,
    )
    assert feats["head_lr_mult"] == pytest.approx(1 / 30)
    assert coda.hparams_for("features", None)["cluster_num"] == 50


def test_pcs_official_optimiser_and_loss_weights() -> None:
    pcs = get_method("pcs")
    hp = pcs.hparams_for("paper", "office31")
    assert (hp["lr"], hp["backbone_lr_mult"], hp["nesterov"], hp["lr_schedule"], hp["weight_decay"]) == (
        0.01,
        0.1,
        True,
        "inverse",
        5e-4,
    )
    assert hp["bn_weight_decay"] == 0.0 and hp["batch_size"] == 64 and hp["joint_forward"] is False
    assert hp["lr_decay_gamma"] == 2e-4  # two official decay steps per paired step
    weights = {
        mp: [pcs.hparams_for("features", mp)[k] for k in ("w_proto_a", "w_proto_b", "w_i2c")]
        for mp in METHOD_PROFILES
    }
    assert weights == {
        "office31": [1.0, 1.0, 1.0],
        "officehome": [0.5, 1.0, 1.0],
        "domainnet": [1.0, 1.0, 1.0],
    }
    feats = pcs.hparams_for("features", "officehome")
    assert (feats["nesterov"], feats["lr_schedule"], feats["lr"]) == (False, "cosine", 0.01)
    assert pcs.hparams_for("digits", "domainnet")["backbone_lr_mult"] == 1.0


def test_cds_dgdir_dann_darl_official_values() -> None:
    cds = get_method("cds").hparams_for("paper", "officehome")
    assert (cds["epochs"], cds["lr"], cds["lr_schedule"], cds["batch_size"], cds["weight_decay"]) == (
        7,
        0.003,
        "constant",
        32,
        5e-4,
    )
    dgdir = get_method("dgdir").hparams_for("paper", "domainnet")
    assert (dgdir["batch_size"], dgdir["lr"], dgdir["key_bn_splits"], dgdir["feature_space"]) == (
        32,
        2e-4,
        1,
        "auto",
    )
    assert get_method("dgdir").hparams_for("features", "domainnet")["batch_size"] == 64
    dann = get_method("dann")
    assert (dann.hparams_for("paper")["disc_lr_mult"], dann.hparams_for("paper")["head_lr_mult"]) == (
        10.0,
        10.0,
    )
    assert (dann.hparams_for("features")["disc_lr_mult"], dann.hparams_for("features")["head_lr_mult"]) == (
        1.0,
        1.0,
    )
    assert dann.hparams_for("paper")["disc_hidden"] == 1024
    for profile in ("paper", "digits", "features"):
        assert get_method("darl").hparams_for(profile)["w_nn"] == 0.0
    assert get_method("darl-nn").hparams_for("paper")["w_nn"] == 1.0
    assert get_method("darl-nn").hparams_for("digits")["w_nn"] == 0.25
    names = method_names()
    assert names.index("darl-nn") == names.index("darl") + 1


# ----- forward mode -----------------------------------------------------------------------------------
def test_forward_mode_of_every_baseline() -> None:
    want = {
        "coda": False,
        "cds": False,
        "pcs": False,
        "dann": True,
        "ucdir": True,
        "darl": True,
        "dn2a": True,
    }
    got = {n: get_method(n).hparams_for("paper")["joint_forward"] for n in want}
    assert got == want


def test_forward_pair_joint_versus_per_domain_batchnorm() -> None:
    torch.manual_seed(0)
    xa, xb = torch.randn(6, D_IN), torch.randn(5, D_IN) + 3.0
    feats = {}
    for joint in (True, False):
        m = get_method("cds")(ctx(factory=BNEncoder), {"joint_forward": joint})
        feats[joint] = m.forward_pair(xa, xb)  # same seeded weights both times
    enc = m.encoder
    torch.testing.assert_close(feats[False][0], F.normalize(enc(xa), dim=1))  # A normalised by A's batch
    torch.testing.assert_close(feats[False][1], F.normalize(enc(xb), dim=1))
    joint = F.normalize(enc(torch.cat([xa, xb])), dim=1)
    torch.testing.assert_close(torch.cat(feats[True]), joint)
    assert float((feats[True][0] - feats[False][0]).detach().abs().max()) > 1e-3


@pytest.mark.parametrize(
    ("name", "per_domain"), [("cds", True), ("pcs", True), ("coda", True), ("dann", False)]
)
def test_methods_forward_as_their_official_code(name: str, per_domain: bool, monkeypatch) -> None:
    sizes: list[int] = []
    orig = EncoderMethod.features

    def spy(self, x, module=None):
        sizes.append(len(x))
        return orig(self, x, module)

    monkeypatch.setattr(EncoderMethod, "features", spy)
    a, b = features_pair()
    hp = {"batch_size": 8, **({"cluster_num": 2} if name == "coda" else {})}
    get_method(name)(ctx(), hp).fit(a, b)
    assert sizes and set(sizes) == ({8} if per_domain else {16}), (name, set(sizes))


# ----- schedules and parameter groups -------------------------------------------------------------------
def test_learning_rate_schedules_by_hand() -> None:
    assert scheduled_lr("constant", 3e-3, 500, 1000) == 3e-3
    assert scheduled_lr("cosine", 0.02, 500, 1000) == pytest.approx(0.01)
    assert inverse_lr(0.01, 10000) == pytest.approx(0.01 * 2.0**-0.75)  # (1 + 1e-4 * 1e4)^-0.75
    assert scheduled_lr("inverse", 0.01, 5000, 1, gamma=2e-4) == pytest.approx(0.01 * 2.0**-0.75)
    with pytest.raises(ValueError):
        scheduled_lr("step", 0.1, 0, 1)


def test_pcs_paper_optimiser_groups_nesterov_and_inverse_decay(monkeypatch) -> None:
    import u2cdr_bench.methods.common as common

    made: dict[str, Any] = {}
    lrs: list[list[float]] = []
    orig_sgd, orig_set = common.make_sgd, common.set_lr

    def sgd(groups, **kw):
        made.update(kw, groups=groups)
        return orig_sgd(groups, **kw)

    def set_lr(opt, lr):
        orig_set(opt, lr)
        lrs.append([g["lr"] for g in opt.param_groups])

    monkeypatch.setattr(common, "make_sgd", sgd)
    monkeypatch.setattr(common, "set_lr", set_lr)
    a, b = features_pair(n=24)
    m = get_method("pcs")(
        ctx("paper", "officehome", scale=0.005, factory=BNEncoder), {"n_k": 1, "batch_size": 8}
    )
    m.fit(a, b)
    assert made["nesterov"] is True and made["weight_decay"] == 5e-4 and made["lr"] == 0.01
    assert len(made["groups"]) == 3
    groups = m.param_groups()  # what train_stage handed to SGD (SGD fills in its defaults in place)
    bn = {id(p) for p in m.encoder.backbone[1].parameters()}
    head = {id(p) for p in m.encoder.head.parameters()}
    for g in groups:
        ids = {id(p) for p in g["params"]}
        if ids <= head:
            assert "lr_mult" not in g and "weight_decay" not in g  # the official fc: lr 0.01, wd 5e-4
        else:
            assert g["lr_mult"] == 0.1  # conv_lr_ratio
            assert (g.get("weight_decay") == 0.0) == (ids <= bn)  # no weight decay on BatchNorm only
    assert sum(len(g["params"]) for g in groups) == len(list(m.encoder.parameters()))
    # 3 paired steps: lr 0.01 (1 + 2e-4 i)^-0.75 for the head, a tenth of it for the backbone
    for i, row in enumerate(lrs):
        base = 0.01 * (1 + 2e-4 * i) ** -0.75
        assert sorted(row) == pytest.approx(sorted([base * g.get("lr_mult", 1.0) for g in groups]))


def test_coda_paper_lr_is_constant_and_heads_are_slower(monkeypatch) -> None:
    import u2cdr_bench.methods.common as common

    lrs: list[list[float]] = []
    orig_set = common.set_lr

    def set_lr(opt, lr):
        orig_set(opt, lr)
        lrs.append([g["lr"] for g in opt.param_groups])

    monkeypatch.setattr(common, "set_lr", set_lr)
    a, b = features_pair(n=32)
    get_method("coda")(ctx("paper", "domainnet", scale=0.05), {"cluster_num": 2}).fit(a, b)
    assert len(lrs) == 2 and all(row == pytest.approx([3e-3, 1e-4]) for row in lrs)  # 32 / 16 = 2 steps


def test_dann_discriminator_and_lr_groups() -> None:
    disc = DomainDiscriminator(8)
    linears = [m for m in disc.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 1024), (1024, 1024), (1024, 1)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in disc.modules()) == 2
    assert disc(torch.randn(4, 8)).shape == (4,)
    a, b = features_pair()
    m = get_method("dann")(ctx("paper", factory=BNEncoder))
    m.setup(a, b)
    assert isinstance(m.classifier, DomainDiscriminator)
    groups = m.param_groups()
    assert groups[1]["lr_mult"] == 10.0 and {id(p) for p in groups[1]["params"]} == {
        id(p) for p in m.encoder.head.parameters()
    }
    m2 = get_method("dann")(ctx(), {"discriminator": "two-layer", "disc_hidden": 256})
    m2.setup(a, b)
    assert isinstance(m2.classifier, DomainClassifier)
    with pytest.raises(UserError):
        get_method("dann")(ctx(), {"discriminator": "wide"}).setup(a, b)


# ----- CoDA's memory, DARL's losses ---------------------------------------------------------------------
def test_coda_memory_starts_from_augmented_views_in_eval_mode(monkeypatch) -> None:
    a, b = features_pair()
    seen: list[str] = []
    orig = EncoderMethod.init_memory

    def spy(self, domain, momentum, source="clean"):
        seen.append(source)
        bank = orig(self, domain, momentum, source)
        if source == "view":
            assert not torch.allclose(bank.bank, self.encode_all(domain))  # not the clean features
        return bank

    monkeypatch.setattr(EncoderMethod, "init_memory", spy)
    get_method("coda")(ctx(), {"cluster_num": 2}).fit(a, b)
    assert seen == ["view", "view"]
    m = get_method("coda")(ctx(), {"cluster_num": 2})
    g = torch.Generator().manual_seed(5)
    m.generator = g
    feats = m.encode_views(a)
    g2 = torch.Generator().manual_seed(5)
    want = F.normalize(m.encoder.eval()(a.view(torch.arange(a.n), g2)), dim=1)
    torch.testing.assert_close(feats, want)
    with pytest.raises(UserError):
        m.init_memory(a, 0.5, "noise")


def test_darl_trains_no_neighbour_loss_and_darl_nn_does(monkeypatch) -> None:
    import u2cdr_bench.baselines.darl as darl

    calls = {"n": 0}
    orig = darl.nn_match_loss

    def spy(*args, **kw):
        calls["n"] += 1
        return orig(*args, **kw)

    monkeypatch.setattr(darl, "nn_match_loss", spy)
    a, b = features_pair()
    get_method("darl")(ctx(scale=0.1), {"nn_warmup": 0}).fit(a, b)
    assert calls["n"] == 0
    get_method("darl-nn")(ctx(scale=0.1), {"nn_warmup": 0}).fit(a, b)
    assert calls["n"] > 0


# ----- DGDIR's feature space ----------------------------------------------------------------------------
def image_pair(channels: int = 3, n: int = 10) -> tuple[UnlabeledDomain, UnlabeledDomain]:
    g = torch.Generator().manual_seed(0)
    return (
        UnlabeledDomain("A", torch.rand(n, channels, 8, 8, generator=g), kind="image"),
        UnlabeledDomain("B", torch.rand(n - 1, channels, 8, 8, generator=g), kind="image"),
    )


def test_dgdir_clusters_and_retrieves_on_the_backbone_when_it_trains(monkeypatch) -> None:
    import u2cdr_bench.baselines.dgdir as dgdir

    dims: list[int] = []
    orig = dgdir.prototype_nce

    def spy(feats, centroids, targets, tau):
        dims.append(int(feats.shape[1]))
        assert centroids.shape[1] == feats.shape[1]
        return orig(feats, centroids, targets, tau=tau)

    monkeypatch.setattr(dgdir, "prototype_nce", spy)
    a, b = image_pair()
    factory = make_encoder_factory("image", (3, 8, 8), out_dim=16)
    c = ctx("paper", "domainnet", (2, 2), 0.02, factory, "image", (3, 8, 8))
    m = DGDIR(c, {"warmup_epoch": 0, "epochs": 2, "batch_size": 4})
    assert m.feature_space() == "backbone"
    m.fit(a, b)
    assert dims and set(dims) == {128}  # the small CNN's pooled output, not the 16-d head
    assert m.info["feature_space"] == "backbone" and m.embed(a).shape == (10, 128)
    head_only = DGDIR(c, {"feature_space": "head"})
    assert head_only.embed(a).shape == (10, 16)
    # features mode: the backbone is frozen (Identity), the head's output serves
    f = DGDIR(ctx(num_classes=(2, 2)))
    assert f.feature_space() == "head" and f.embed(features_pair()[0]).shape == (40, 8)
    with pytest.raises(UserError):
        DGDIR(ctx(), {"feature_space": "pixels"}).feature_space()


def test_dgdir_clusters_on_per_channel_phase_and_keys_see_one_batchnorm_batch() -> None:
    a, _ = image_pair(channels=3)
    m = DGDIR(ctx("paper", None, (2, 2), 0.02, make_encoder_factory("image", (3, 8, 8)), "image", (3, 8, 8)))
    rgb = m._clean_phase(a, per_channel=True)
    torch.testing.assert_close(rgb, phase_only_image(a.x, gray=False))
    assert float((rgb - m._clean_phase(a)).abs().max()) > 1e-3  # not the grey phase of the training views
    torch.manual_seed(0)
    key = BNEncoder()
    x = torch.randn(12, D_IN)
    whole = encode_keys(key, x, torch.Generator().manual_seed(0), splits=1)
    torch.testing.assert_close(whole, F.normalize(key(x), dim=1))
    halves = encode_keys(key, x, torch.Generator().manual_seed(0), splits=2)
    assert float((whole - halves).abs().max()) > 1e-4


# ----- the runner hands the dataset's profile to the method ----------------------------------------------
def test_runner_passes_the_method_profile(tmp_path, capsys) -> None:
    import json

    from u2cdr_bench.cli import main

    args = ["run", "--method", "coda", "--dataset", "digits", "--pairs", "MN:OD", "--protocol", "close-set"]
    code = main([*args, "--epochs-scale", "0.04", "--json", "--quiet", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    rec = json.loads(out)
    assert rec["method_info"]["method_profile"] == "domainnet"
    assert rec["method_info"]["cluster_num_list"] == [7, 14, 21, 28]
    assert all(math.isfinite(v) for v in rec["metrics"].values() if v is not None)
    assert np.isfinite(rec["metrics"]["map_all"])
