"""The backbone registry (u2cdr_bench/backbones.py): architectures, weight loading routes, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision

from u2cdr_bench import backbones as bb
from u2cdr_bench.errors import UserError
from u2cdr_bench.nets import make_encoder_factory

PACS_PHOTO = Path(__file__).resolve().parents[2] / "shared" / "data" / "pacs" / "photo"


@pytest.fixture()
def offline(tmp_path: Path, monkeypatch) -> Path:
    """No downloads, an empty weights folder and an empty torch hub cache."""
    monkeypatch.setenv("U2CDR_OFFLINE", "1")
    monkeypatch.setenv("U2CDR_WEIGHTS", str(tmp_path / "weights"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    bb._loaded.cache_clear()
    bb._head_state.cache_clear()
    yield tmp_path / "weights"
    torch.hub.set_dir(old)
    bb._loaded.cache_clear()
    bb._head_state.cache_clear()


def test_registry_names_dims_and_preprocessing() -> None:
    names = bb.BACKBONES.names()
    for n in ("effnet-lite0", "resnet50", "resnet18", "moco-v2-r50", "clip-vit-b-32", "tiny-random"):
        assert n in names
    dims = {n: bb.BACKBONES.get(n).out_dim for n in names}
    assert dims["effnet-lite0"] == 1280 and dims["resnet50"] == 2048 and dims["resnet18"] == 512
    assert dims["moco-v2-r50"] == 2048 and dims["clip-vit-b-32"] == 512
    import open_clip

    cfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    clip = bb.BACKBONES.get("clip-vit-b-32").preprocess
    assert (
        clip.mean == tuple(cfg["mean"]) and clip.std == tuple(cfg["std"]) and clip.interpolation == "bicubic"
    )
    assert bb.BACKBONES.get("resnet50").preprocess.mean == (0.485, 0.456, 0.406)
    assert bb.BACKBONES.get("moco-v2-r50").weights.checksum == "md5:a04e12f8"
    assert bb.BACKBONES.get("resnet50").weights.filename == "resnet50-0676ba61.pth"


def test_effnet_state_dict_keys_match_the_package_file_and_load_strictly() -> None:
    path = bb.resolve_weights("effnet-lite0", download=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = bb.EfficientNetLite0()
    assert set(net.state_dict()) == set(state)
    assert all(net.state_dict()[k].shape == v.shape for k, v in state.items())
    net.load_state_dict(state, strict=True)
    assert len(net._blocks) == 16


def test_same_padding_by_hand() -> None:
    conv = bb.SameConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = conv(x)
    # o = ceil(4/2) = 2, total pad (2-1)*2 + 3 - 4 = 1: none before, one zero row/column after
    padded = F.pad(x, [0, 1, 0, 1])
    want = torch.tensor([[padded[0, 0, r : r + 3, c : c + 3].sum() for c in (0, 2)] for r in (0, 2)])
    torch.testing.assert_close(y[0, 0], want)
    one = bb.SameConv2d(1, 1, 5, stride=1)
    assert one(torch.rand(1, 1, 7, 9)).shape == (1, 1, 7, 9)


def test_batchnorm_folding_by_hand() -> None:
    torch.manual_seed(0)
    for stride in (1, 2):
        conv = bb.SameConv2d(3, 4, 3, stride)
        bn = torch.nn.BatchNorm2d(4, eps=1e-3).eval()
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
        x = torch.rand(2, 3, 9, 10)
        with torch.no_grad():
            torch.testing.assert_close(bb._fold(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-6)
    net = bb.EfficientNetLite0().fold_batchnorm()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


@pytest.mark.dataset
@pytest.mark.skipif(not PACS_PHOTO.is_dir(), reason="PACS photos not found under ../shared/data/pacs")
def test_effnet_recognises_pacs_photos() -> None:
    from u2cdr_bench.data.images import open_rgb, resize_center_crop

    cats = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    net = bb.load_backbone("effnet-lite0")
    net.net.fold_batchnorm()

    def top5(cls: str) -> list[list[str]]:
        files = sorted((PACS_PHOTO / cls).iterdir())[:4]
        x = torch.stack([resize_center_crop(open_rgb(f), 256, 224) for f in files])
        with torch.no_grad():
            idx = net.logits(x).topk(5).indices
        return [[cats[i] for i in row] for row in idx.tolist()]

    # the folded network (used for extraction) gives the unfolded network's logits
    x = torch.stack([resize_center_crop(open_rgb(sorted((PACS_PHOTO / "horse").iterdir())[0]), 256, 224)])
    with torch.no_grad():
        torch.testing.assert_close(
            net.logits(x), bb.load_backbone("effnet-lite0").logits(x), rtol=1e-3, atol=1e-3
        )
    guitars = {"acoustic guitar", "electric guitar"}
    assert all(guitars & set(t) for t in top5("guitar"))
    elephants = {"African elephant", "Indian elephant", "tusker"}
    assert sum(bool(elephants & set(t)) for t in top5("elephant")) >= 3  # the first shows a car mirror
    dog_classes = set(cats[151:269])  # the 118 dog breeds of ImageNet-1k
    assert sum(t[0] in dog_classes for t in top5("dog")) >= 3


def test_resnet18_local_path_route(tmp_path: Path, offline: Path) -> None:
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None).eval()
    path = tmp_path / "my_r18.pth"
    torch.save(ref.state_dict(), path)
    net = bb.load_backbone(f"resnet18:{path}")
    assert net.out_dim == 512
    x = torch.rand(2, 3, 64, 64)
    ref.fc = torch.nn.Identity()
    mean = torch.tensor(bb.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(bb.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref((x - mean) / std))
    fp = bb.backbone_fingerprint(f"resnet18:{path}")
    assert fp["backbone"] == "resnet18" and fp["preprocess"]["crop"] == 224
    with pytest.raises(UserError, match="does not exist"):
        bb.load_backbone(f"resnet18:{tmp_path / 'nope.pth'}")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="does not fit"):
        bb.load_backbone(f"resnet18:{bad}")


def test_fake_moco_checkpoint_keys_are_renamed(tmp_path: Path, offline: Path) -> None:
    torch.manual_seed(2)
    trunk = torchvision.models.resnet50(weights=None).eval()
    state = {f"module.encoder_q.{k}": v for k, v in trunk.state_dict().items() if not k.startswith("fc.")}
    state["module.encoder_q.fc.0.weight"] = torch.zeros(2048, 2048)  # MoCo v2 MLP head: dropped
    state["module.encoder_q.fc.2.weight"] = torch.zeros(128, 2048)
    state["module.encoder_k.conv1.weight"] = torch.zeros(64, 3, 7, 7)  # key encoder: dropped
    state["module.queue"] = torch.zeros(128, 16)
    path = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state}, path)
    assert set(bb.moco_to_resnet(state)) == {k for k in trunk.state_dict() if not k.startswith("fc.")}
    net = bb.load_backbone(f"moco-v2-r50:{path}")
    x = torch.rand(1, 3, 64, 64)
    trunk.fc = torch.nn.Identity()
    mean = torch.tensor(bb.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(bb.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), trunk((x - mean) / std))
    plain = tmp_path / "plain.pth"
    torch.save(trunk.state_dict(), plain)
    with pytest.raises(UserError, match="module.encoder_q"):
        bb.load_backbone(f"moco-v2-r50:{plain}")


def test_finetune_encoder_takes_the_moco_projection_head(tmp_path: Path, offline: Path) -> None:
    """UCDIR / DG-UCDIR load the whole ``encoder_q`` with its 2048-2048-128 MLP (UCDIR ``main.py``
    ll. 169-184): finetune mode builds backbone + that pretrained head when the checkpoint has it."""
    torch.manual_seed(3)
    trunk = torchvision.models.resnet50(weights=None).eval()
    state = {f"module.encoder_q.{k}": v for k, v in trunk.state_dict().items() if not k.startswith("fc.")}
    fc0, fc2 = torch.nn.Linear(2048, 2048), torch.nn.Linear(2048, 128)
    for i, lin in ((0, fc0), (2, fc2)):
        state[f"module.encoder_q.fc.{i}.weight"] = lin.weight.detach().clone()
        state[f"module.encoder_q.fc.{i}.bias"] = lin.bias.detach().clone()
    path = tmp_path / "moco_v2_800ep_pretrain.pth.tar"
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state}, path)
    head = bb.moco_projection_head(state)
    assert sorted(head) == ["net.0.bias", "net.0.weight", "net.2.bias", "net.2.weight"]
    build = bb.finetune_encoder_factory(f"moco-v2-r50:{path}")
    enc, enc2 = build(), build()
    assert enc.training and enc.out_dim == 128 and enc is not enc2
    assert enc.head.net[0].weight.shape == (2048, 2048)
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor(bb.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(bb.IMAGENET_STD).view(1, 3, 1, 1)
    enc.eval()
    trunk.fc = torch.nn.Sequential(fc0, torch.nn.ReLU(), fc2)  # MoCo v2's query encoder, end to end
    with torch.no_grad():
        torch.testing.assert_close(enc(x), trunk((x - mean) / std), rtol=1e-4, atol=1e-5)
    # a checkpoint without the MLP (MoCo v1: one linear fc) gets the fresh 2048 -> 512 -> 128 head
    del state["module.encoder_q.fc.2.weight"], state["module.encoder_q.fc.2.bias"]
    del state["module.encoder_q.fc.0.weight"], state["module.encoder_q.fc.0.bias"]
    assert bb.moco_projection_head(state) is None
    plain = tmp_path / "v1" / "moco_v2_800ep_pretrain.pth.tar"
    plain.parent.mkdir()
    torch.save({"state_dict": state}, plain)
    fresh = bb.finetune_encoder_factory(f"moco-v2-r50:{plain}")()
    assert fresh.head.net[0].weight.shape == (512, 2048) and fresh.out_dim == 128
    assert bb.finetune_encoder_factory("tiny-random")().head.net[0].weight.shape == (512, 64)


def test_missing_weights_name_the_file_and_the_folder(offline: Path) -> None:
    for name, filename in (
        ("resnet50", "resnet50-0676ba61.pth"),
        ("moco-v2-r50", "moco_v2_800ep_pretrain.pth.tar"),
        ("clip-vit-b-32", "ViT-B-32.pt"),
    ):
        with pytest.raises(UserError) as err:
            bb.resolve_weights(name)
        msg = str(err.value)
        assert filename in msg and str(offline) in msg and "U2CDR_OFFLINE" in msg


def test_weights_folder_is_searched(tmp_path: Path, offline: Path) -> None:
    offline.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), offline / "resnet18-f37072fd.pth")
    assert bb.resolve_weights("resnet18") == offline / "resnet18-f37072fd.pth"


def test_unknown_and_malformed_names() -> None:
    with pytest.raises(UserError, match="valid choices: .*effnet-lite0"):
        bb.parse_backbone("vgg16")
    with pytest.raises(UserError, match="weights path after the colon"):
        bb.parse_backbone("resnet18:")


def test_backbone_factory_gives_trainable_copies_without_classifier() -> None:
    factory = bb.backbone_factory("tiny-random")
    a, b = factory(), factory()
    assert a.training and a.out_dim == 64
    assert a is not b and a.net.body[0].weight.data_ptr() != b.net.body[0].weight.data_ptr()
    torch.testing.assert_close(a.net.body[0].weight, b.net.body[0].weight)  # same pretrained (seeded) weights
    enc = make_encoder_factory("image", (3, 32, 32), out_dim=16, backbone_factory=factory)()
    out = enc(torch.rand(3, 3, 32, 32))
    assert out.shape == (3, 16)
    out.sum().backward()
    assert enc.backbone.net.body[0].weight.grad is not None
    eff = bb.backbone_factory("effnet-lite0")()
    assert isinstance(eff.net._fc, torch.nn.Identity) and eff.out_dim == 1280


def test_feature_extractor_normalises_inside() -> None:
    net = bb.load_backbone("tiny-random")
    x = torch.rand(2, 3, 40, 40)
    mean = torch.tensor(bb.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(bb.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), net.net.features((x - mean) / std))
    # seeded random init: two loads agree
    torch.testing.assert_close(bb.load_backbone("tiny-random").net.body[0].weight, net.net.body[0].weight)
    with pytest.raises(UserError, match="no ImageNet classifier"):
        net.logits(x)


def test_clip_tower_through_open_clip(tmp_path: Path) -> None:
    """The open_clip route on the smallest ViT config (ViT-S-32, random init; ViT-B-32 is the same code)."""
    import open_clip

    tower = bb._make_clip("ViT-S-32")(None).eval()
    with torch.no_grad():
        out = tower.features(torch.rand(1, 3, 224, 224))
    assert out.shape == (1, tower.out_dim) and tower.out_dim == 384
    bad = tmp_path / "bad.bin"
    torch.save({"visual.nope": torch.zeros(1)}, bad)
    with pytest.raises(UserError, match="open_clip cannot load"):
        bb._make_clip("ViT-S-32")(bad)
    assert open_clip.get_pretrained_cfg("ViT-B-32", "openai")["quick_gelu"] is True
