"""Every kernel rewritten for speed (issue 13) against the implementation it replaced, on random data.

The old implementations are copied here verbatim (as of commit a373663) and serve as references: the new
code must give the same result, bit for bit where the old code's arithmetic is kept, within float rounding
where it is reordered (each test says which).
"""

from __future__ import annotations

import numpy as np
import pytest

from u2cdr_bench.metrics import PerQueryAP, _relevant_counts, per_query_ap
from u2cdr_bench.retrieval import iter_sq_euclidean_chunks

# ---------------------------------------------------------------------------------------------------------
# per_query_ap (map_all, map_all_standard, map_at_r): old = full float64 sort of every distance row
# ---------------------------------------------------------------------------------------------------------


def _old_relevant_ranks(row: np.ndarray, sorted_row: np.ndarray, rel_idx: np.ndarray) -> np.ndarray:
    s = np.sort(row[rel_idx])
    lo = np.searchsorted(sorted_row, s, side="left")
    hi = np.searchsorted(sorted_row, s, side="right")
    s_lo = np.searchsorted(s, s, side="left")
    s_hi = np.searchsorted(s, s, side="right")
    if np.array_equal(hi - lo, s_hi - s_lo):
        return lo + (np.arange(s.size) - s_lo) + 1
    order = np.argsort(row, kind="stable")
    is_rel = np.zeros(row.size, dtype=bool)
    is_rel[rel_idx] = True
    return np.flatnonzero(is_rel[order]) + 1


def old_per_query_ap(q, ql, g, gl, chunk=512) -> PerQueryAP:
    q, g = np.asarray(q), np.asarray(g)
    ql, gl = np.asarray(ql, dtype=np.int64), np.asarray(gl, dtype=np.int64)
    n_q = q.shape[0]
    voc, std, at_r = (np.full(n_q, np.nan) for _ in range(3))
    r_q = _relevant_counts(ql, gl)
    included = np.flatnonzero(r_q > 0)
    if included.size == 0:
        return PerQueryAP(voc, std, at_r)
    g_order = np.argsort(gl, kind="stable")
    g_classes, g_start, g_count = np.unique(gl[g_order], return_index=True, return_counts=True)
    rel_of = {
        int(c): np.sort(g_order[s : s + n]) for c, s, n in zip(g_classes, g_start, g_count, strict=True)
    }
    for start, dist in iter_sq_euclidean_chunks(q[included], g, chunk):
        sorted_dist = np.sort(dist, axis=1)
        for r in range(dist.shape[0]):
            qi = included[start + r]
            ranks = _old_relevant_ranks(dist[r], sorted_dist[r], rel_of[int(ql[qi])])
            n_rel = ranks.size
            prec = np.arange(1, n_rel + 1) / ranks
            envelope = np.maximum.accumulate(prec[::-1])[::-1]
            voc[qi] = envelope.mean()
            std[qi] = prec.mean()
            at_r[qi] = prec[ranks <= n_rel].sum() / n_rel
    return PerQueryAP(voc, std, at_r)


def _random_case(rng: np.random.Generator, kind: str):
    nq, ng = int(rng.integers(1, 60)), int(rng.integers(1, 90))
    d, c = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    if kind == "gauss":
        qf, gf = rng.standard_normal((nq, d)), rng.standard_normal((ng, d))
    elif kind == "integer":  # small integers: many exact distance ties, also across classes
        qf, gf = rng.integers(0, 3, (nq, d)).astype(float), rng.integers(0, 3, (ng, d)).astype(float)
    else:  # float32 with duplicated gallery rows and queries equal to gallery rows (distance 0)
        gf = rng.standard_normal((ng, d)).astype(np.float32)
        gf[rng.integers(0, ng, ng // 2)] = gf[0]
        h = min(nq // 2, ng)
        qf = np.concatenate([gf[:h], rng.standard_normal((nq - h, d)).astype(np.float32)])
    return qf, rng.integers(0, c, nq), gf, rng.integers(0, c, ng), int(rng.integers(1, 20))


@pytest.mark.parametrize("kind", ["gauss", "integer", "duplicates"])
def test_per_query_ap_equals_old_full_sort_bit_for_bit(kind: str) -> None:
    rng = np.random.default_rng({"gauss": 0, "integer": 1, "duplicates": 2}[kind])
    for _ in range(60):
        qf, ql, gf, gl, chunk = _random_case(rng, kind)
        new, old = per_query_ap(qf, ql, gf, gl, chunk=chunk), old_per_query_ap(qf, ql, gf, gl, chunk=chunk)
        for a, b in zip(new, old, strict=True):
            assert np.array_equal(a, b, equal_nan=True)


def test_per_query_ap_equals_old_on_a_large_gallery_with_float32_twins() -> None:
    """2,000 x 3,000 x 16-d: the float32 band sort meets float32 twins of relevant distances (its float64
    fallback) and must still equal the old full float64 sort exactly."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((8, 16))
    gl, ql = rng.integers(0, 8, 3000), rng.integers(0, 9, 2000)  # class 8: queries without relevant items
    gf = (centres[gl] + rng.standard_normal((3000, 16))).astype(np.float32)
    qf = (centres[ql % 8] + rng.standard_normal((2000, 16))).astype(np.float32)
    gf[::7] = np.round(gf[::7], 1)  # coarse values: float32 (and some float64) ties between items
    qf[::5] = np.round(qf[::5], 1)
    new, old = per_query_ap(qf, ql, gf, gl, chunk=300), old_per_query_ap(qf, ql, gf, gl, chunk=300)
    for a, b in zip(new, old, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    assert np.isnan(new.voc[ql == 8]).all() and not np.isnan(new.voc[ql != 8]).any()


# ---------------------------------------------------------------------------------------------------------
# Feature extraction: old = one sequential loop decoding each chunk in the main process
# ---------------------------------------------------------------------------------------------------------


def old_extract(files, backbone: str, views, chunk_size: int, batch_size: int, partners=None) -> dict:
    """The pre-issue-13 ``_run_chunks`` loop, without the cache: decode a chunk, each view's inputs of the
    whole chunk, forward passes of ``batch_size`` from the chunk's start."""
    import torch

    from u2cdr_bench import features as feat
    from u2cdr_bench.backbones import parse_backbone
    from u2cdr_bench.data.images import limit_size, open_rgb

    spec, _ = parse_backbone(backbone)
    model = feat._inference_model(backbone)
    n = len(files)
    out = {v.name: np.zeros((n, spec.out_dim), dtype=np.float32) for v in views}
    with torch.inference_mode():
        for lo in range(0, n, chunk_size):
            hi = min(n, lo + chunk_size)
            images = [open_rgb(p) for p in files.paths[lo:hi]]
            images = [None if im is None else limit_size(im, feat.MAX_SHORT_SIDE) for im in images]
            ok = np.array([im is not None for im in images], dtype=bool)
            for view in views:
                x = feat._view_inputs(view, images, files.names[lo:hi], spec.preprocess, partners)
                f = np.zeros((hi - lo, spec.out_dim), dtype=np.float32)
                for b in range(0, hi - lo, batch_size):
                    xb = x[b : b + batch_size].contiguous(memory_format=torch.channels_last)
                    f[b : b + len(xb)] = model(xb).float().numpy()
                f[~ok] = 0.0
                out[view.name][lo:hi] = f
    return out


@pytest.mark.parametrize("workers", ["0", "1", "2"])
def test_extraction_with_decode_workers_equals_the_old_sequential_loop(
    tmp_path, monkeypatch, workers
) -> None:
    """Every view kind, chunks and batches that do not divide the domain, a truncated file: the features of
    the worker-process decode are those of the old loop, bit for bit."""
    from PIL import Image

    from u2cdr_bench.backbones import BACKBONES, BackboneSpec, Preprocess, register_backbone
    from u2cdr_bench.features import ImageSet, View, extract_views

    if "test-tiny32" not in BACKBONES:
        tiny = BACKBONES.get("tiny-random")
        register_backbone(BackboneSpec("test-tiny32", "tests only", 64, Preprocess(36, 32), tiny.make, None))
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    paths = []
    for i in range(11):
        p = root / f"c{i % 2}" / f"img_{i:03d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        size = (40 + 3 * i, 32 + 2 * i)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p, quality=90)
        paths.append(p)
    paths[4].write_bytes(paths[4].read_bytes()[:100])  # unreadable
    names = tuple(p.relative_to(root).as_posix() for p in paths)
    files = ImageSet("toy", "dom", tuple(paths), names, np.zeros(11, dtype=np.int64))
    views = [View("clean"), View("aug", 1), View("strong", 0), View("fourier", 0), View("phase", 0)]
    monkeypatch.setenv("U2CDR_DECODE_WORKERS", workers)
    got = extract_views(files, "test-tiny32", views, tmp_path / "c", chunk_size=5, batch_size=2, quiet=True)
    want = old_extract(files, "test-tiny32", views, chunk_size=5, batch_size=2, partners=None)
    for v in views:
        np.testing.assert_array_equal(got[v.name].features, want[v.name])
        assert got[v.name].ok.tolist() == [i != 4 for i in range(11)]


# ---------------------------------------------------------------------------------------------------------
# Memory updates after the optimiser step (EncoderMethod.after_step): old = snapshot + update before backward
# ---------------------------------------------------------------------------------------------------------


def _bank_method(deferred: bool):
    import torch

    from u2cdr_bench.blocks.losses import instance_nce
    from u2cdr_bench.data.types import UnlabeledDomain
    from u2cdr_bench.methods.base import FitContext
    from u2cdr_bench.methods.common import EncoderMethod
    from u2cdr_bench.nets import make_encoder_factory

    class BankToy(EncoderMethod):
        name = "bank-toy"
        summary = "test only"
        citation = "none"
        distance = "cosine"
        defaults = {"epochs": 3, "tau": 0.2, "memory_momentum": 0.5}

        def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
            banks = [self.init_memory(d, 0.5) for d in (domain_a, domain_b)]

            def step(epoch, idx_a, idx_b):
                fa, fb = self.forward_pair(self.view(domain_a, idx_a), self.view(domain_b, idx_b))
                mem = [b.bank if deferred else b.bank.clone() for b in banks]
                loss = instance_nce(fa, mem[0], idx_a, 0.2) + instance_nce(fb, mem[1], idx_b, 0.2)
                loss = loss + (fa @ mem[1].t()).logsumexp(1).mean()  # a cross-domain read of the memory
                news = [(idx_a, fa.detach()), (idx_b, fb.detach())]
                if deferred:
                    self.after_step(lambda: [b.update(i, f) for b, (i, f) in zip(banks, news, strict=True)])
                else:
                    for b, (i, f) in zip(banks, news, strict=True):
                        b.update(i, f)
                return loss, {"loss": float(loss.detach())}

            self.train_stage("toy", domain_a, domain_b, 3, step)
            self.banks = banks

    rng = np.random.default_rng(0)
    doms = [
        UnlabeledDomain(
            f"d{k}",
            torch.tensor(rng.standard_normal((n, 16)), dtype=torch.float32),
            "features",
            views=torch.tensor(rng.standard_normal((3, n, 16)), dtype=torch.float32),
        )
        for k, n in enumerate((70, 45))  # unequal sizes: B's memory sees repeated indices
    ]
    ctx = FitContext(
        seed=0,
        encoder_factory=make_encoder_factory("features", (16,), out_dim=8, hidden=32),
        input_kind="features",
        input_shape=(16,),
        profile="features",
    )
    m = BankToy(ctx, {"batch_size": 32})
    m.fit(*doms)
    return m


def test_memory_update_after_the_step_equals_snapshot_then_update_bit_for_bit() -> None:
    import torch

    old, new = _bank_method(deferred=False), _bank_method(deferred=True)
    for (k, a), (_, b) in zip(
        old.encoder.state_dict().items(), new.encoder.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), k
    for a, b in zip(old.banks, new.banks, strict=True):
        assert torch.equal(a.bank, b.bank)
    assert new._after_step is None  # outside a stage an update runs at once
    calls = []
    new.after_step(lambda: calls.append(1))
    assert calls == [1]
