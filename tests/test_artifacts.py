"""Saved outputs of a run: same hash and numbers, the embeddings are what was scored, the model rebuilds
the encoder, the carried detector reproduces the detectors, finished runs lacking outputs are re-run, bad
input is one sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from u2cdr_bench.artifacts import (
    SaveOptions,
    embed_inputs,
    has_outputs,
    load_embeddings,
    load_model,
    rebuild_encoder,
    save_model,
    sha256_file,
)
from u2cdr_bench.blocks.detector import generic_private_detector
from u2cdr_bench.carried_detector import DetectorState, generic_state
from u2cdr_bench.cli import main
from u2cdr_bench.data.registry import DataOptions, get_dataset
from u2cdr_bench.methods import get_method
from u2cdr_bench.methods.uem.detector import uem_private_detector
from u2cdr_bench.metrics import evaluate
from u2cdr_bench.runner import RunConfig, Runner

RUN = ["--protocol", "open-set", "--pairs", "mnist:optdigits", "--quiet"]


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _rows(ids: np.ndarray, domain: str) -> np.ndarray:
    assert all(str(i).startswith(f"{domain}/") for i in ids)
    return np.asarray([int(str(i).rsplit("/", 1)[1]) for i in ids])


def test_saved_outputs_change_neither_hash_nor_numbers(saved_runs, tmp_path, capsys):
    plain = tmp_path / "plain"
    code = main(
        ["run", "--method", "source-only", *RUN, "--epochs-scale", "0.1", "--out", str(plain), "--json"]
    )
    assert code == 0
    rec = json.loads(capsys.readouterr().out)
    saved = saved_runs.record()
    assert rec["config_hash"] == saved["config_hash"] == saved_runs.trained.stem
    assert rec["config"] == saved["config"]
    assert rec["metrics"] == saved["metrics"]
    assert "artifacts" not in rec and sorted(p.name for p in plain.iterdir()) == [
        f"{rec['config_hash']}.json"
    ]
    art = saved["artifacts"]
    for key, suffix in (("embeddings", ".npz"), ("model", ".model.pt")):
        path = saved_runs.folder / art[key]["file"]
        assert path.name == saved["config_hash"] + suffix
        assert art[key]["sha256"] == sha256_file(path) and art[key]["bytes"] == path.stat().st_size
    assert art["model"]["encoder"] == "encoder" and art["model"]["detector"] == "generic"

    # the plain folder's record lacks the outputs: asking for them re-runs it; the saved one is done
    cfg = RunConfig(**saved["config"])
    want = SaveOptions(embeddings=True, model=True)
    assert Runner(DataOptions(), plain).is_done(cfg)
    assert not Runner(DataOptions(), plain, save=want).is_done(cfg)
    assert Runner(DataOptions(), saved_runs.folder, save=want).is_done(cfg)
    assert not Runner(DataOptions(), saved_runs.folder, save=want, force=True).is_done(cfg)
    copy = tmp_path / "tampered"
    shutil.copytree(saved_runs.folder, copy)
    npz = copy / art["embeddings"]["file"]
    _flip_a_byte(npz)
    assert not has_outputs(saved, copy, SaveOptions(embeddings=True))
    assert has_outputs(saved, copy, SaveOptions(model=True))


def test_saved_embeddings_are_what_was_scored(saved_runs):
    saved = load_embeddings(saved_runs.trained)
    rec = saved.record
    assert saved.query.shape == (rec["counts"]["n_query"], rec["counts"]["feature_dim"])
    assert saved.gallery.shape == (rec["counts"]["n_gallery"], rec["counts"]["feature_dim"])
    # the metrics of the saved arrays are the record's (rounded to 4 decimals as recorded)
    again = evaluate(saved.query, saved.query_labels, saved.gallery, saved.gallery_labels, saved.private_pred)
    for key, value in rec["metrics"].items():
        assert round(again[key], 4) == value, key
    # ids are rows of the loaded domains and carry the evaluation labels
    spec = get_dataset("digits")
    mnist, optdigits = spec.load("mnist", DataOptions()), spec.load("optdigits", DataOptions())
    assert np.array_equal(mnist.labels[_rows(saved.query_ids, "mnist")], saved.query_labels)
    assert np.array_equal(optdigits.labels[_rows(saved.gallery_ids, "optdigits")], saved.gallery_labels)
    gallery_names = {saved.class_names[i] for i in np.unique(saved.gallery_labels)}
    assert gallery_names == set(rec["protocol"]["gallery_classes"])
    truth = ~np.isin(saved.query_labels, saved.gallery_labels)
    assert np.array_equal(saved.query_private, truth) and truth.sum() == rec["counts"]["n_query_private"]
    assert saved.private_pred is not None and saved.private_pred.dtype == bool
    assert saved.query_files is None  # digits are not files
    assert saved.meta["config_hash"] == rec["config_hash"] and saved.meta["dataset_kind"] == "image"


def test_saved_model_rebuilds_the_encoder_and_its_detector(saved_runs):
    model = load_model(saved_runs.trained.with_suffix("").with_suffix(".model.pt"))
    assert load_model(saved_runs.trained)["config_hash"] == model["config_hash"]  # a record names its model
    assert model["pipeline"] == "pixels" and model["input_shape"] == [1, 16, 16]
    module = rebuild_encoder(model)
    assert isinstance(module, nn.Module) and not module.training
    saved = load_embeddings(saved_runs.trained)
    x = get_dataset("digits").load("mnist", DataOptions()).x[_rows(saved.query_ids, "mnist")]
    emb = embed_inputs(model, module, x)
    assert np.allclose(emb, saved.query, atol=1e-5)
    state = DetectorState.from_dict(model["detector"])
    assert state.kind == "generic" and state.distance == get_method("source-only").distance == "cosine"
    # applied to the run's own features the carried detector gives the run's flags
    assert np.array_equal(state.flags(saved.query, saved.gallery), saved.private_pred)


def test_pretrained_is_saved_as_identity(saved_runs):
    rec = saved_runs.record("pretrained")
    assert rec["artifacts"]["model"]["encoder"] == "identity"
    model = load_model(saved_runs.pretrained)
    assert rebuild_encoder(model) is None and model["encoder"]["normalize"] is False
    x = torch.rand(3, 1, 16, 16)
    assert np.array_equal(embed_inputs(model, None, x), x.reshape(3, -1).numpy())


def test_encoder_that_is_not_the_embedding_saves_no_model(tmp_path):
    torch.manual_seed(0)
    enc = nn.Linear(4, 3)
    method = SimpleNamespace(encoder=enc)
    ctx = SimpleNamespace(encoder_factory=lambda: nn.Linear(4, 3))
    query = SimpleNamespace(x=torch.rand(10, 4), kind="features")
    record = {
        "config": {"setting": "close-set", "backbone": "precomputed", "mode": "features"},
        "config_hash": "0" * 16,
        "protocol": {"query_classes": ["a"], "gallery_classes": ["a"]},
    }
    spec = SimpleNamespace(kind="features")
    other = np.random.default_rng(0).standard_normal((10, 3)).astype(np.float32)
    path = tmp_path / "m.model.pt"
    assert save_model(path, record, method, ctx, spec, query, other, other) is None
    assert not path.exists()
    right = torch.nn.functional.normalize(enc(query.x), dim=1).detach().numpy()
    assert save_model(path, record, method, ctx, spec, query, right, right)["encoder"] == "encoder"
    assert path.is_file()


def _clusters(seed: int, n: int = 240, k: int = 4, d: int = 8, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 6, (k, d))
    return (centres[np.arange(n) % k] + shift + rng.normal(0, 0.7, (n, d))).astype(np.float32)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
@pytest.mark.parametrize("threshold", ["radius", "diameter"])
def test_generic_state_reproduces_the_generic_detector(distance, threshold):
    q, g = _clusters(0), _clusters(1, n=120, k=2, shift=0.3)
    state = generic_state(q, distance, seed=3, threshold=threshold)
    expected = generic_private_detector(q, g, distance=distance, seed=3, threshold=threshold)
    assert 0 < expected.sum() < len(q)  # the case is not trivial
    assert np.array_equal(state.flags(q, g), expected)


def test_uem_state_reproduces_uem_detector_with_full_spread(tmp_path):
    q, g = _clusters(0), _clusters(1, n=150, k=3, shift=0.2)
    res = uem_private_detector(q, g, seed=5, k_min=2, k_max=8, niter=20, nredo=2, spread="all")
    # the state UEM.export_detector stores: the query prototypes and their all-member Eq. 25 thresholds
    state = DetectorState("uem", res.prototypes, res.proto_thresholds, "euclidean", "delta")
    assert np.array_equal(state.flags(q, g), res.flags)
    assert res.flags.any() and not res.flags.all()
    assert np.isnan(state.thresholds).sum() == res.merge.k_a - res.merge.num_merged
    # the state survives the model file's torch.save / torch.load(weights_only=True)
    torch.save({"detector": state.to_dict()}, tmp_path / "s.pt")
    back = DetectorState.from_dict(torch.load(tmp_path / "s.pt", weights_only=True)["detector"])
    assert np.array_equal(back.flags(q, g), res.flags) and back.distance == "delta"


def test_bad_input_for_saved_outputs_is_one_sentence(saved_runs, tmp_path, capsys):
    plain = tmp_path / "plain"
    assert main(["run", "--method", "pretrained", *RUN, "--out", str(plain)]) == 0
    (record,) = plain.glob("*.json")
    capsys.readouterr()
    cases = [
        (["plot", "retrievals", str(record)], "has no saved embeddings; re-run it with `u2cdr-bench run"),
        (["plot", "retrievals", str(tmp_path / "nope.json")], "does not exist"),
        (["plot", "embedding", str(record)], "--save-embeddings"),
        # the suggested command writes beside the record and runs again (not into ./runs, not "done already")
        (["plot", "retrievals", str(record)], f"--out {plain} --force --save-embeddings`"),
    ]
    copy = tmp_path / "tampered"
    shutil.copytree(saved_runs.folder, copy)
    rec = saved_runs.record()
    npz = copy / rec["artifacts"]["embeddings"]["file"]
    _flip_a_byte(npz)
    cases.append((["plot", "retrievals", str(copy / saved_runs.trained.name)], "does not match the checksum"))
    model = str(saved_runs.trained)
    not_model = tmp_path / "x.model.pt"
    not_model.write_text("hello")
    img = tmp_path / "q.png"
    from PIL import Image

    Image.new("L", (16, 16)).save(img)
    cases += [
        (
            ["retrieve", "--model", str(not_model), "--gallery", str(tmp_path), "--query", str(img)],
            "is not a",
        ),
        (
            ["retrieve", "--model", str(record), "--gallery", str(tmp_path), "--query", str(img)],
            "no saved model",
        ),
        (
            ["retrieve", "--model", model, "--gallery", str(tmp_path), "--query", str(record)],
            "cannot be read",
        ),
        (["retrieve", "--model", model, "--gallery", str(plain), "--query", str(img)], "holds no image"),
        (
            ["retrieve", "--model", model, "--gallery", str(tmp_path / "no"), "--query", str(img)],
            "does not exist",
        ),
        (
            ["retrieve", "--model", model, "--gallery", str(tmp_path), "--query", str(tmp_path / "n.png")],
            "exist",
        ),
        (
            ["retrieve", "--model", model, "--gallery", str(tmp_path), "--query", str(img), "--top", "0"],
            "--top",
        ),
        (
            [
                "retrieve",
                "--model",
                model,
                "--gallery",
                str(tmp_path),
                "--query",
                str(img),
                "--plot",
                "-o",
                "x.gif",
            ],
            "suffix must be one of",
        ),
        (["plot", "results", "--runs", str(tmp_path / "none")], "does not exist"),
        (["plot", "results", "--runs", str(plain), "--metric", "nope"], "Unknown metric 'nope'"),
        (["plot", "embedding", str(saved_runs.trained), "--projection", "nope"], "Unknown projection"),
    ]
    for args, expected in cases:
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2, args
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1, (args, err)
    assert sorted(p.name for p in plain.iterdir()) == [record.name]  # nothing written
    assert not Path("retrievals-" + record.stem + ".png").exists()


def test_classifier_state_reproduces_codas_detector():
    from u2cdr_bench.carried_detector import fit_state
    from u2cdr_bench.data.types import DomainSamples
    from u2cdr_bench.methods.base import FitContext
    from u2cdr_bench.nets import make_encoder_factory

    def domain(name: str, seed: int, shift: float) -> DomainSamples:
        x = _clusters(seed, n=96, k=4, d=16, shift=shift)
        views = np.stack(
            [x + 0.2 * np.random.default_rng(seed + i).standard_normal(x.shape) for i in range(2)]
        )
        return DomainSamples(name, torch.from_numpy(x), np.arange(96) % 4, tuple("abcd"), "features",
                             views=torch.from_numpy(views.astype(np.float32)))  # fmt: skip

    a, b = domain("a", 0, 0.0), domain("b", 1, 0.5)
    ctx = FitContext(seed=3, encoder_factory=make_encoder_factory("features", (16,)), input_kind="features",
                     input_shape=(16,), epochs_scale=0.05, profile="features")  # fmt: skip
    coda = get_method("coda")(ctx)
    coda.fit(a.unlabeled(), b.unlabeled())
    q, g = coda.embed(a.unlabeled()), coda.embed(b.unlabeled())
    state = fit_state(coda, q, g)
    assert state is not None and state.kind == "classifier" and state.assign == "dot"
    assert np.array_equal(state.flags(q, g), coda.detect_private(q, g))
