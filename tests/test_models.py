"""Equation-level and behavioural tests of the MDR model (tiny random items, CPU)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from mdr.config import LossConfig, ModelConfig, SlotConfig
from mdr.models.base import ItemFeatures, RecModel
from mdr.models.din import DINAttention, DINHead
from mdr.models.fusion import DisentangledFusion, FactorLayout
from mdr.models.image_vae import (
    ImageDecoder,
    ImageEncoder,
    kl_divergence,
    reconstruction_loss,
)
from mdr.models.mdr import LOSS_TERMS, MDRRecommender
from mdr.models.text_aspects import (
    AttentionEncoder,
    aspect_hinge_loss,
    kmeans_aspects,
    orthogonality_loss,
)

N_ITEMS, SIZE, VOCAB, DIM, L = 30, 32, 50, 16, 12

SLOTS = (
    SlotConfig("colour", "visual_dominant", 3, "colour"),
    SlotConfig("size", "text_dominant", 2, None),
    SlotConfig("shape", "visual_only", 2, "shape"),
    SlotConfig("material", "text_only", 2, None),
)


def _blocky_images(g: torch.Generator) -> torch.Tensor:
    """Learnable toy photos: a solid background colour and one solid square per item."""
    img = torch.empty(N_ITEMS, SIZE, SIZE, 3, dtype=torch.uint8)
    img[:] = torch.randint(0, 256, (N_ITEMS, 1, 1, 3), generator=g, dtype=torch.uint8)
    for i, (y, x) in enumerate(torch.randint(0, SIZE // 2, (N_ITEMS, 2), generator=g).tolist()):
        img[i, y : y + SIZE // 2, x : x + SIZE // 2] = torch.randint(
            0, 256, (3,), generator=g, dtype=torch.uint8
        )
    return img


def tiny_features(seed: int = 0) -> ItemFeatures:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, VOCAB, (N_ITEMS, L), generator=g)
    lengths = torch.randint(3, L + 1, (N_ITEMS,), generator=g)
    lengths[5] = 0  # an item without text
    tokens[torch.arange(L)[None, :] >= lengths[:, None]] = 0
    wv = torch.randn(VOCAB, DIM, generator=g)
    wv[0] = 0.0
    image_mask = torch.ones(N_ITEMS, dtype=torch.bool)
    image_mask[7] = False
    colour = torch.randint(0, 3, (N_ITEMS,), generator=g)
    colour[::3] = -1
    shape = torch.randint(0, 2, (N_ITEMS,), generator=g)
    shape[1::2] = -1
    return ItemFeatures(
        n_items=N_ITEMS,
        n_users=10,
        images=_blocky_images(g),
        image_mask=image_mask,
        tokens=tokens,
        lengths=lengths,
        word_vectors=wv,
        labels={"colour": colour, "shape": shape},
        label_classes={"colour": 3, "shape": 2},
        category=torch.zeros(N_ITEMS, dtype=torch.long),
        n_categories=1,
    )


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(
        slots=SLOTS,
        image_blackbox_dim=3,
        text_blackbox_dim=3,
        blackbox_out_dim=4,
        image_channels=(8, 8, 16),
        text_hidden=16,
        n_aspects=5,
        max_text_len=L,
        att_hidden=(16,),
        mlp_hidden=(16, 8),
        id_dim=6,
    )
    base.update(kw)
    return ModelConfig(**base)


def tiny_batch(B: int = 8, H: int = 6, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(0, N_ITEMS, (B, H), generator=g)
    lens = torch.randint(1, H + 1, (B,), generator=g)
    mask = torch.arange(H)[None, :] < lens[:, None]
    hist[~mask] = 0
    return {
        "user": torch.arange(B),
        "hist": hist,
        "hist_mask": mask,
        "cand": torch.randint(0, N_ITEMS, (B,), generator=g),
        "label": (torch.arange(B) % 2).float(),
    }


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine
    OpenMP spinning makes them ~10x slower; restore the setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def feats() -> ItemFeatures:
    return tiny_features()


# --------------------------------------------------------------------------- image VAE


def test_kl_closed_form():
    mu = torch.tensor([[0.5, -1.0, 2.0]])
    logvar = torch.tensor([[0.0, 1.0, -2.0]])
    var = logvar.exp()
    # KL(N(mu, var) || N(0, 1)) per dim = 0.5 (var + mu^2 - 1 - log var); summed over dims
    expected = (0.5 * (var + mu**2 - 1 - logvar)).sum(dim=1)
    torch.testing.assert_close(kl_divergence(mu, logvar), expected)
    p = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    q = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(
        kl_divergence(mu, logvar), torch.distributions.kl_divergence(p, q).sum(dim=1)
    )
    assert kl_divergence(torch.zeros(4, 5), torch.zeros(4, 5)).abs().max() == 0


def test_reconstruction_loss_is_per_value_in_standardised_units():
    x = torch.zeros(2, 3, 4, 4)
    x_rec = torch.full((2, 3, 4, 4), 0.5)
    torch.testing.assert_close(reconstruction_loss(x, x_rec), torch.tensor([0.125, 0.125]))
    std = torch.tensor([0.5, 1.0, 0.25])  # errors of 1, 0.5 and 2 standard deviations
    want = 0.5 * (1.0 + 0.25 + 4.0) / 3
    torch.testing.assert_close(reconstruction_loss(x, x_rec, std), torch.tensor([want, want]))


def test_the_visual_loss_is_a_textbook_beta_vae_per_pixel_value():
    """rec + beta * kl of ImageVAE = (Gaussian NLL summed over values + beta * KL summed
    over dims) / number of values: the same weights mean the same at 16 and 32 pixels."""
    from mdr.models.image_vae import ImageVAE

    for size in (16, 32):
        images = torch.randint(
            0,
            256,
            (6, size, size, 3),
            dtype=torch.uint8,
            generator=torch.Generator().manual_seed(size),
        )
        vae = ImageVAE(images, 4, 4, (4, 4))
        x = images.permute(0, 3, 1, 2).float() / 255
        f, logvar = torch.randn(6, 4), torch.randn(6, 4)
        x_rec = torch.rand(6, 3, size, size)
        std = vae.encoder.pixel_std.view(1, 3, 1, 1)
        nll = 0.5 * ((x_rec - x) / std).pow(2).flatten(1).sum(1)
        torch.testing.assert_close(vae.rec(x, x_rec) * 3 * size * size, nll)
        torch.testing.assert_close(vae.kl(f, logvar) * 3 * size * size, kl_divergence(f, logvar))


@pytest.mark.parametrize("size", [32, 64])
def test_vae_shapes(size):
    enc = ImageEncoder(size, 7, (8, 8, 16, 16))
    dec = ImageDecoder(size, 5, (8, 8, 16, 16))
    f, lv = enc(torch.rand(3, 3, size, size))
    assert f.shape == lv.shape == (3, 7)
    with torch.no_grad():
        x = dec(torch.randn(3, 5))
    assert x.shape == (3, 3, size, size) and bool(torch.isfinite(x).all())
    with pytest.raises(ValueError, match="multiple"):
        ImageEncoder(20, 4, (8, 8, 16))


# --------------------------------------------------------------------------- text


def test_attention_matches_eq2_and_masks_padding():
    torch.manual_seed(0)
    enc = AttentionEncoder(4)
    w = torch.randn(2, 5, 4)
    mask = torch.tensor([[True, True, True, False, False], [True] * 5])
    t = enc(w, mask)
    # Eq. 2 by hand for row 0 over its 3 real tokens
    w0 = w[0, :3]
    a = w0 @ enc.M @ w0.mean(0)
    expected = (torch.softmax(a, 0)[:, None] * w0).sum(0)
    torch.testing.assert_close(t[0], expected)
    w2 = w.clone()
    w2[0, 3:] = 100.0  # padded vectors must not matter
    torch.testing.assert_close(enc(w2, mask), t)
    empty = enc(w, torch.zeros(2, 5, dtype=torch.bool))
    assert torch.equal(empty, torch.zeros(2, 4))


def test_orthogonality_zero_for_orthonormal_D():
    D = torch.eye(6)[:4] * 3.0  # orthogonal rows; scaled rows are normalised first
    assert float(orthogonality_loss(D)) == pytest.approx(0.0, abs=1e-6)
    Q, _ = torch.linalg.qr(torch.randn(8, 8))
    assert float(orthogonality_loss(Q[:5])) == pytest.approx(0.0, abs=1e-5)
    D2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # two equal rows: off-diagonals 1
    assert float(orthogonality_loss(D2)) == pytest.approx(2**0.5 / 2)  # ||.||_F / K


def test_hinge_known_answer():
    t = torch.tensor([[1.0, 0.0]])
    t_rec = torch.tensor([[2.0, 0.0]])  # normalised: (1, 0)
    negs = torch.tensor([[[0.0, 3.0], [-1.0, 0.0], [1.0, 0.0]]])
    # per negative: 1 - 1 + 0 = 0; 1 - 1 - 1 -> 0; 1 - 1 + 1 = 1; mean over the 3 negatives
    torch.testing.assert_close(aspect_hinge_loss(t_rec, t, negs), torch.tensor([1.0 / 3]))


def test_kmeans_aspects_rows_normalised_and_seeded():
    wv = torch.randn(40, 8)
    D = kmeans_aspects(wv, 5, seed=3)
    assert D.shape == (5, 8)
    torch.testing.assert_close(D.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(kmeans_aspects(wv, 5, seed=3), D)
    with pytest.raises(ValueError, match="distinct"):
        kmeans_aspects(torch.ones(10, 3), 5)
    used = kmeans_aspects(wv, 5, seed=3, words=torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7]]))
    assert used.shape == (5, 8)  # clusters of the words the texts use only
    with pytest.raises(ValueError, match="distinct"):
        kmeans_aspects(wv, 5, words=torch.tensor([1, 2, 3]))


def test_eq14_per_slot_each_aspect_reads_only_its_own_slot(feats):
    """p_j = fc_j(r_j): one row of D per named text slot, from that slot's columns alone;
    the other rows from r_blackbox; t' a convex combination of the rows."""
    m = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=0)
    text, cols = m.text, m.fusion.text_columns()
    assert text.aspect_slots == ["colour", "size", "material", "blackbox", "blackbox"]
    assert text.D.shape[0] == 5 and set(text.fc) == {"colour", "size", "material", "blackbox"}
    assert all(text.fc[n].out_features == text.aspect_slots.count(n) for n in text.fc)
    torch.manual_seed(0)
    r = torch.randn(4, m.fusion.text_index.numel())
    with torch.no_grad():
        base = text.aspect_logits(r)
        for j, slot in enumerate(text.aspect_slots):
            others = [c for n, cs in cols.items() if n != slot for c in cs]
            moved = r.clone()
            moved[:, others] += torch.randn(4, len(others))
            assert torch.allclose(text.aspect_logits(moved)[:, j], base[:, j]), slot
            own = r.clone()
            own[:, cols[slot]] += 1.0
            assert not torch.allclose(text.aspect_logits(own)[:, j], base[:, j]), slot
        want = torch.softmax(base, -1) @ torch.nn.functional.normalize(text.D, dim=1)
        torch.testing.assert_close(text.reconstruct(r), want)


def test_eq14_dense_ablation_and_aspect_counts(feats):
    dense = MDRRecommender(tiny_cfg(aspect_decoder="dense"), LossConfig(), feats, seed=0)
    assert dense.text.aspect_slots == ["any"] * 5 and not hasattr(dense.text, "fc")
    with pytest.raises(ValueError, match="one aspect per named text slot"):
        MDRRecommender(tiny_cfg(n_aspects=2), LossConfig(), feats, seed=0)
    with pytest.raises(ValueError, match="text_blackbox_dim 0"):
        MDRRecommender(
            tiny_cfg(text_blackbox_dim=0, image_blackbox_dim=0), LossConfig(), feats, seed=0
        )
    exact = MDRRecommender(
        tiny_cfg(text_blackbox_dim=0, image_blackbox_dim=0, n_aspects=3),
        LossConfig(),
        feats,
        seed=0,
    )
    assert exact.text.aspect_slots == ["colour", "size", "material"]


# --------------------------------------------------------------------------- fusion


def _layout(**kw) -> FactorLayout:
    args = dict(
        slots=SLOTS, image_blackbox_dim=3, text_blackbox_dim=3, use_image=True, use_text=True
    )
    args.update(kw)
    return FactorLayout(**args)


def test_fusion_rules_of_algorithm1():
    torch.manual_seed(0)
    lay = _layout()
    fus = DisentangledFusion(lay, "algorithm1", alpha=0.3, blackbox_out_dim=4)
    s, z = torch.randn(5, lay.s_dim), torch.randn(5, lay.z_dim)
    r = fus(s, z)
    ss, zs = lay.s_slices(), lay.z_slices()
    assert lay.s_dim == 3 + 2 + 2 + 3 and lay.z_dim == 3 + 2 + 2 + 3
    assert r.shape == (5, 3 + 2 + 2 + 2 + 4) == (5, fus.r_dim)
    u_c, v_c = s[:, ss["colour"]], z[:, zs["colour"]]
    u_s, v_s = s[:, ss["size"]], z[:, zs["size"]]
    # line 3 (visual dominant), line 4 (text dominant)
    torch.testing.assert_close(
        r[:, 0:3], u_c + fus.shared["colour"](torch.cat([u_c, 0.3 * v_c], 1))
    )
    torch.testing.assert_close(r[:, 3:5], v_s + fus.shared["size"](torch.cat([0.3 * u_s, v_s], 1)))
    assert torch.equal(r[:, 5:7], s[:, ss["shape"]])  # line 5: untouched
    assert torch.equal(r[:, 7:9], z[:, zs["material"]])  # line 6: untouched
    bb = torch.cat([s[:, ss["blackbox"]], z[:, zs["blackbox"]]], 1)
    torch.testing.assert_close(r[:, 9:], fus.blackbox(bb))  # line 7
    assert fus.visual_index.tolist() == [0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 12]
    assert fus.text_index.tolist() == [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 12]


def test_fusion_zero_fc_gives_residual_identity():
    lay = _layout()
    fus = DisentangledFusion(lay, "algorithm1", alpha=0.0)
    with torch.no_grad():
        for p in fus.shared.parameters():
            p.zero_()
    s, z = torch.randn(4, lay.s_dim), torch.randn(4, lay.z_dim)
    r = fus(s, z)
    assert torch.equal(r[:, 0:3], s[:, 0:3])  # r_j = u_j exactly
    assert torch.equal(r[:, 3:5], z[:, 3:5])  # r_j = v_j exactly


def test_fusion_concat_and_single_modality():
    lay = _layout()
    s, z = torch.randn(4, lay.s_dim), torch.randn(4, lay.z_dim)
    cat = DisentangledFusion(lay, "concat")
    assert torch.equal(cat(s, z), torch.cat([s, z], 1))
    assert float(cat.information_constraint()) == 0.0
    img = DisentangledFusion(_layout(use_text=False), "algorithm1")
    s_img = torch.randn(4, img.layout.s_dim)
    assert torch.equal(img(s_img, None), s_img)
    assert img.text_index.numel() == 0
    txt = DisentangledFusion(_layout(use_image=False), "algorithm1")
    assert txt.layout.z_dim == 3 + 2 + 2 + 3


def test_information_constraint_is_l2_norm_of_blackbox_params():
    fus = DisentangledFusion(_layout(), "algorithm1")
    flat = torch.cat([p.reshape(-1) for p in fus.blackbox.parameters()])
    torch.testing.assert_close(fus.information_constraint(), flat.norm())


# --------------------------------------------------------------------------- DIN


@pytest.mark.parametrize("n_cands", [1, 3, 12])  # both paths: C <= A (7) and C > A
def test_din_blockwise_first_layer_equals_concat(n_cands: int):
    torch.manual_seed(0)
    att = DINAttention(5, (7, 3))
    hh, hc = torch.randn(2, 4, 5), torch.randn(2, n_cands, 5)
    got = att.first_layer(hh, hc)  # (B, C, H, A)
    k = hh.unsqueeze(1).expand(2, n_cands, 4, 5)
    i = hc.unsqueeze(2).expand(2, n_cands, 4, 5)
    ref = att.first(torch.cat([k, i, k - i, k * i], -1))
    torch.testing.assert_close(got, ref)


def test_prelu_matches_its_definition():
    from mdr.models.din import PReLU

    act = PReLU(3, init=0.25)
    x = torch.tensor([[[-2.0, 0.0, 3.0], [1.0, -1.0, -4.0]]])  # (1, 2, 3): any leading dims
    want = torch.tensor([[[-0.5, 0.0, 3.0], [1.0, -0.25, -1.0]]])
    torch.testing.assert_close(act(x), want)


def test_din_padding_has_no_effect_and_candidates_independent():
    torch.manual_seed(0)
    head = DINHead(6, (8,), (8, 4))
    hh, hc = torch.randn(3, 5, 6), torch.randn(3, 4, 6)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    out = head(hh, mask, hc)
    assert out.shape == (3, 4)
    hh2 = hh.clone()
    hh2[~mask] = torch.randn(int((~mask).sum()), 6) * 50
    torch.testing.assert_close(head(hh2, mask, hc), out)
    # scoring candidates one at a time gives the same logits
    single = torch.stack([head(hh, mask, hc[:, c : c + 1])[:, 0] for c in range(4)], 1)
    torch.testing.assert_close(single, out)
    w = head.attention(hh, mask, hc)
    assert torch.equal(w[~mask.unsqueeze(1).expand_as(w)], torch.zeros(int((~mask).sum()) * 4))


# --------------------------------------------------------------------------- MDRRecommender


def test_protocol_and_loss_keys(feats):
    m = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=0)
    assert isinstance(m, RecModel)
    out = m.calculate_loss(tiny_batch())
    assert set(out) == {"loss", *LOSS_TERMS}
    for k in LOSS_TERMS:
        assert out[k].dtype == torch.float32 and torch.isfinite(out[k])
        assert not out[k].requires_grad
    assert out["loss"].requires_grad
    assert all(float(out[k]) > 0 for k in LOSS_TERMS)
    # learned weights only in the checkpoint: item content buffers are non-persistent
    assert not any(
        k.startswith(("images", "tokens", "mean_wv", "text.word_vectors")) for k in m.state_dict()
    )


def test_same_seed_same_model(feats):
    a = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=0).state_dict()
    b = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=0).state_dict()
    c = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_padding_ids_do_not_change_output(feats):
    m = MDRRecommender(tiny_cfg(), LossConfig(), feats).eval()
    batch = tiny_batch()
    batch2 = dict(batch, hist=batch["hist"].clone())
    batch2["hist"][~batch["hist_mask"]] = 17
    with torch.no_grad():
        torch.testing.assert_close(m.predict(batch2), m.predict(batch))
        reps = m.encode_items(torch.arange(N_ITEMS))
        cands = torch.randint(0, N_ITEMS, (8, 5))
        torch.testing.assert_close(
            m.score(reps, batch2["hist"], batch["hist_mask"], cands),
            m.score(reps, batch["hist"], batch["hist_mask"], cands),
        )


def test_unique_vs_per_position_and_score_agree(feats):
    uniq = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=0).eval()
    naive = MDRRecommender(tiny_cfg(unique_item_encoding=False), LossConfig(), feats, seed=0)
    naive.eval()
    batch = tiny_batch()
    with torch.no_grad():
        p = uniq.predict(batch)
        torch.testing.assert_close(naive.predict(batch), p, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(
            naive.calculate_loss(batch)["pred"],
            uniq.calculate_loss(batch)["pred"],
            rtol=1e-5,
            atol=1e-5,
        )
        reps = uniq.encode_items(torch.arange(N_ITEMS))
        s = uniq.score(reps, batch["hist"], batch["hist_mask"], batch["cand"][:, None])
        torch.testing.assert_close(s[:, 0], p, rtol=1e-5, atol=1e-5)


def test_eval_is_deterministic_train_samples(feats):
    m = MDRRecommender(tiny_cfg(), LossConfig(), feats).eval()
    items = torch.arange(N_ITEMS)
    with torch.no_grad():
        assert torch.equal(m.encode_items(items), m.encode_items(items))
        m.train()  # the recommender reads the posterior mean in training too
        assert torch.equal(m.predict(tiny_batch()), m.predict(tiny_batch()))
    sampled = MDRRecommender(
        dataclasses.replace(tiny_cfg(), recommend_from_sample=True), LossConfig(), feats
    ).train()
    with torch.no_grad():
        assert not torch.equal(sampled.predict(tiny_batch()), sampled.predict(tiny_batch()))


def test_reconstruction_subset_caps_decoded_items(feats):
    m = MDRRecommender(tiny_cfg(), dataclasses.replace(LossConfig(), max_recon_items=3), feats)
    img = torch.ones(10, dtype=torch.bool)
    img[4] = False
    idx = m._recon_subset(img)
    assert len(idx) == 3 and 4 not in idx.tolist()
    full = MDRRecommender(tiny_cfg(), LossConfig(), feats)._recon_subset(img)
    assert full.tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9]


def test_every_loss_term_has_a_gradient(feats):
    m = MDRRecommender(tiny_cfg(), LossConfig(), feats)
    terms = m.loss_terms(tiny_batch())
    params = [p for p in m.parameters() if p.requires_grad]
    for k in LOSS_TERMS:
        grads = torch.autograd.grad(terms[k], params, retain_graph=True, allow_unused=True)
        total = sum(float(g.abs().sum()) for g in grads if g is not None)
        assert total > 0, f"loss term {k} has no gradient"


def test_tiny_batch_overfits_and_terms_move(feats):
    torch.manual_seed(0)
    m = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=0)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    batch = tiny_batch(B=16, H=5, seed=4)
    first = {k: float(v.detach()) for k, v in m.calculate_loss(batch).items()}
    for _ in range(200):
        opt.zero_grad()
        out = m.calculate_loss(batch)
        out["loss"].backward()
        opt.step()
    last = {k: float(v.detach()) for k, v in m.calculate_loss(batch).items()}
    assert last["loss"] < 0.5 * first["loss"]
    m.eval()
    with torch.no_grad():
        bce = F.binary_cross_entropy_with_logits(m.predict(batch), batch["label"])
    assert float(bce) < 0.1
    for k in LOSS_TERMS:
        assert last[k] != first[k], f"loss term {k} did not move"


VARIANTS = {
    "image_only": dict(use_text=False),
    "text_only": dict(use_image=False),
    "concat": dict(fusion="concat"),
    "id_only": dict(use_image=False, use_text=False, use_id_embedding=True),
    "mdr_ids": dict(use_id_embedding=True),
    "no_ws": dict(weak_supervision=False),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_run(feats, name):
    m = MDRRecommender(tiny_cfg(**VARIANTS[name]), LossConfig(), feats)
    batch = tiny_batch()
    out = m.calculate_loss(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    m.eval()
    with torch.no_grad():
        assert m.predict(batch).shape == (8,)
        reps = m.encode_items(torch.arange(N_ITEMS))
        assert reps.shape == (N_ITEMS, m.rep_dim)
        assert m.score(
            reps,
            batch["hist"],
            batch["hist_mask"],
            torch.randint(0, N_ITEMS, (8, 11)),
            batch["user"],
        ).shape == (8, 11)
    zero_terms = {
        "image_only": {"text", "ortho", "reg"},
        "text_only": {"rec", "kl", "reg"},  # the colour label supervises v_colour too
        "concat": {"reg"},
        "id_only": {"rec", "kl", "ws", "text", "ortho", "reg"},
        "mdr_ids": set(),
        "no_ws": {"ws"},
    }[name]
    for k in LOSS_TERMS:
        assert (float(out[k]) == 0.0) == (k in zero_terms), k


def test_bf16_autocast_forward(feats):
    m = MDRRecommender(tiny_cfg(), LossConfig(), feats)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.calculate_loss(tiny_batch())
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    m.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        reps = m.encode_items(torch.arange(N_ITEMS))
        s = m.score(
            reps,
            tiny_batch()["hist"],
            tiny_batch()["hist_mask"],
            torch.zeros(8, 3, dtype=torch.long),
        )
    assert torch.isfinite(s.float()).all()


def test_masked_items_excluded_from_item_losses(feats):
    # an item without an image / without text contributes nothing to rec, kl / text
    cfg = tiny_cfg()
    m = MDRRecommender(cfg, LossConfig(), feats).eval()
    B = 2
    only_masked = {
        "user": torch.arange(B),
        "hist": torch.tensor([[7], [5]]),
        "hist_mask": torch.tensor([[True], [True]]),
        "cand": torch.tensor([7, 5]),
        "label": torch.ones(B),
    }
    with torch.no_grad():
        out = m.calculate_loss(only_masked)
    # item 7 has no image, item 5 has no text; 7 has text and 5 has an image
    assert float(out["text"]) > 0 and float(out["rec"]) > 0
    no_image = torch.ones(N_ITEMS, dtype=torch.bool)
    no_image[[5, 7]] = False  # neither item of the batch has an image
    feats2 = dataclasses.replace(feats, image_mask=no_image)
    m2 = MDRRecommender(cfg, LossConfig(), feats2).eval()
    with torch.no_grad():
        out2 = m2.calculate_loss(only_masked)
    assert float(out2["rec"]) == 0 and float(out2["kl"]) == 0
    with torch.no_grad():  # what remains of ws is the text factors' part alone
        items = torch.tensor([5, 7])
        enc = m2._encode(items, sample=False)
        text_ws = m2.weak_text(items, enc["z"], m2.has_text[items])
    assert float(out2["ws"]) == pytest.approx(float(text_ws))


def test_config_errors(feats):
    blind = dataclasses.replace(feats, image_mask=torch.zeros(N_ITEMS, dtype=torch.bool))
    with pytest.raises(ValueError, match="no item of this dataset has an image"):
        MDRRecommender(tiny_cfg(), LossConfig(), blind)
    with pytest.raises(ValueError, match="not in the dataset"):
        MDRRecommender(
            tiny_cfg(slots=(SlotConfig("c", "visual_only", 2, "nope"),)), LossConfig(), feats
        )
    with pytest.raises(ValueError, match="at least one"):
        MDRRecommender(tiny_cfg(use_image=False, use_text=False), LossConfig(), feats)


def test_text_negatives_are_other_items_with_text(feats):
    m = MDRRecommender(tiny_cfg(), LossConfig(), feats)
    items = torch.arange(N_ITEMS).repeat(20)
    torch.manual_seed(0)
    neg = m._sample_negatives(items, 7)  # (n, g)
    assert neg.shape == (len(items), 7)
    assert not bool((neg == items[:, None]).any())
    assert bool(m.has_text[neg].all())
    assert 5 not in neg.unique().tolist()  # item 5 has no text


def test_same_seed_same_losses(feats):
    outs = []
    for _ in range(2):
        m = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=0)
        torch.manual_seed(5)
        outs.append({k: float(v.detach()) for k, v in m.calculate_loss(tiny_batch()).items()})
    assert outs[0] == outs[1]


def test_r_columns_cover_r_once_in_every_fusion_mode() -> None:
    """r_columns() names every column of r exactly once, for each fusion mode."""
    from mdr.config import SlotConfig
    from mdr.models.fusion import DisentangledFusion, FactorLayout

    slots = (
        SlotConfig("colour", "visual_dominant", 2),
        SlotConfig("size", "text_dominant", 3),
        SlotConfig("shape", "visual_only", 1),
        SlotConfig("brand", "text_only", 2),
    )
    for mode, img, txt in [
        ("algorithm1", True, True),
        ("concat", True, True),
        ("concat", True, False),
        ("concat", False, True),
    ]:
        fusion = DisentangledFusion(FactorLayout(slots, 4, 3, img, txt), mode, 0.5, 5)
        cols = fusion.r_columns()
        flat = sorted(c for v in cols.values() for c in v)
        assert flat == list(range(fusion.r_dim)), (mode, img, txt)
    alg = DisentangledFusion(FactorLayout(slots, 4, 3, True, True), "algorithm1", 0.5, 5)
    assert alg.r_columns() == {
        "colour": [0, 1],
        "size": [2, 3, 4],
        "shape": [5],
        "brand": [6, 7],
        "blackbox": [8, 9, 10, 11, 12],
    }
    cat = DisentangledFusion(FactorLayout(slots, 4, 3, True, True), "concat", 0.5, 5)
    # s = [colour 2, size 3, shape 1, bb 4] (10), z = [colour 2, size 3, brand 2, bb 3]
    assert cat.r_columns()["colour"] == [0, 1, 10, 11]
    assert cat.r_columns()["brand"] == [15, 16]


def test_standardised_decoder_output_maps_back_to_pixels():
    """A linear last layer in standardised space: zero output -> the per-channel pixel mean."""
    from mdr.models.image_vae import ImageDecoder

    mean, std = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0.2, 0.3, 0.4])
    dec = ImageDecoder(8, 3, (4, 4), hidden=5, pixel_stats=(mean, std))
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in dec.modules())
    with torch.no_grad():
        last = [m for m in dec.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
        last.weight.zero_()
        last.bias.copy_(torch.tensor([1.0, 0.0, -1.0]))  # +1 std, 0, -1 std
    out = dec(torch.randn(2, 3))
    want = torch.tensor([0.9 + 0.2, 0.8, 0.7 - 0.4]).view(1, 3, 1, 1).expand(2, 3, 8, 8)
    torch.testing.assert_close(out, want)


def test_weak_labels_supervise_every_part_of_their_slot(feats):
    """A labelled slot's image factors (Eq. 12-13) and its text factors alike, whichever of
    them the model has."""
    slots = (
        SlotConfig("colour", "visual_dominant", 3, "colour"),
        SlotConfig("size", "text_dominant", 2, "shape"),
        SlotConfig("material", "text_only", 2, "colour"),
    )
    m = MDRRecommender(tiny_cfg(slots=slots), LossConfig(), feats, seed=0)
    assert set(m.weak.classifiers) == {"colour", "size"}
    assert set(m.weak_text.classifiers) == {"colour", "size", "material"}
    text_only = MDRRecommender(tiny_cfg(slots=slots, use_image=False), LossConfig(), feats)
    assert text_only.weak is None
    assert set(text_only.weak_text.classifiers) == {"colour", "size", "material"}
    image_only = MDRRecommender(tiny_cfg(slots=slots, use_text=False), LossConfig(), feats)
    assert set(image_only.weak.classifiers) == {"colour", "size"}  # material has no image part
    assert image_only.weak_text is None
    off = MDRRecommender(tiny_cfg(slots=slots, weak_supervision=False), LossConfig(), feats)
    assert off.weak is None and off.weak_text is None
    # the text classifiers read the text factors z of the slot: a known answer
    items = torch.arange(N_ITEMS)
    with torch.no_grad():
        m.eval()
        enc = m._encode(items, sample=False)
        z_sl = m.layout.z_slices()
        has = m.has_text[items]
        y = feats.labels["shape"]
        keep = has & (y >= 0)
        ce = torch.nn.functional.cross_entropy(
            m.weak_text.classifiers["size"](enc["z"][keep][:, z_sl["size"]]),
            y[keep],
            reduction="sum",
        )
        yc = feats.labels["colour"]
        keep_c = has & (yc >= 0)
        ce_m = torch.nn.functional.cross_entropy(
            m.weak_text.classifiers["material"](enc["z"][keep_c][:, z_sl["material"]]),
            yc[keep_c],
            reduction="sum",
        )
        ce_c = torch.nn.functional.cross_entropy(
            m.weak_text.classifiers["colour"](enc["z"][keep_c][:, z_sl["colour"]]),
            yc[keep_c],
            reduction="sum",
        )
        got = m.weak_text(items, enc["z"], has)
        torch.testing.assert_close(got, (ce + ce_m + ce_c) / has.float().sum())


# --------------------------------------------------------------------------- capabilities


CAPABILITIES = {  # variant -> (slots, image_decoder, text_aspects); codes, attention always
    "mdr": (True, True, True),
    "image_only": (True, True, False),
    "text_only": (True, False, True),
    "concat": (True, True, True),
    "id_only": (False, False, False),
    "mdr_ids": (True, True, True),
}


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_capabilities_follow_the_config(feats, name):
    from mdr.models.capabilities import Capabilities, model_capabilities

    m = MDRRecommender(tiny_cfg(**VARIANTS.get(name, {})), LossConfig(), feats)
    slots, image, text = CAPABILITIES[name]
    want = Capabilities(
        codes=True,
        slots=slots,
        image_decoder=image,
        attention=True,
        text_aspects=text,
        item_losses=slots,
    )
    assert m.capabilities == want
    assert model_capabilities(m) == want  # and the declared protocols are implemented
    assert want.missing("image_decoder", "text_aspects") == (
        []
        if image and text
        else [w for w, ok in (("image decoder", image), ("text aspects", text)) if not ok]
    )
    parts = m.r_parts()
    if not slots:
        assert parts == {}
    else:
        assert {k: v for k, v in parts.items() if k != "id_embedding"} == {
            k: v for k, v in m.r_columns().items() if v
        }
        assert ("id_embedding" in parts) == (name == "mdr_ids")
        assert sorted(c for v in parts.values() for c in v) == list(range(m.rep_dim))


def test_declared_methods_read_what_the_model_computes(feats):
    """The capabilities' methods are the model's own computations, not copies of them."""
    m = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=0).eval()
    items = torch.arange(N_ITEMS)
    with torch.no_grad():
        reps = m.encode_items(items)
        batch = tiny_batch()
        h_hist = reps[batch["hist"]]
        h_cand = reps[torch.randint(0, N_ITEMS, (8, 3))]
        torch.testing.assert_close(
            m.attention_weights(h_hist, batch["hist_mask"], h_cand),
            m.din.attention(h_hist, batch["hist_mask"], h_cand),
        )
        assert m.image_items().tolist() == [i for i in range(N_ITEMS) if i != 7]
        x = m.item_images(torch.tensor([0, 3]))
        assert x.shape == (2, 3, SIZE, SIZE) and float(x.max()) <= 1.0
        assert m.decoder_network is m.image.decoder
        torch.testing.assert_close(
            m.decode_images(reps), m.decoder_network(reps[:, m.image_columns])
        )
        text_items = m.text_items
        r_text = m._encode(text_items, sample=False)["r_content"][:, m.fusion.text_index]
        torch.testing.assert_close(m.text_representations(chunk=7), r_text.float())
    assert m.aspect_matrix is m.text.D and m.aspect_decoder == "per_slot"
    assert torch.equal(m.word_vectors, feats.word_vectors.float())
    assert m.aspect_slots == list(m.text.aspect_slots)
    assert m.text_columns() == m.fusion.text_columns()
    with pytest.raises(ValueError, match="per-slot aspect decoder has no dense weights"):
        m.aspect_weights()
    dense = MDRRecommender(tiny_cfg(aspect_decoder="dense"), LossConfig(), feats)
    assert torch.equal(dense.aspect_weights(), dense.text.p_fc.weight)
    text_only = MDRRecommender(tiny_cfg(use_image=False), LossConfig(), feats)
    with pytest.raises(ValueError, match="no image side"):
        text_only.image_items()
    with pytest.raises(ValueError, match="no text side"):
        MDRRecommender(tiny_cfg(use_text=False), LossConfig(), feats).aspect_matrix  # noqa: B018


def test_declaring_capabilities_changes_no_weight(feats):
    """The declared interface adds methods only: the same parameters, in the same order, with
    the same initial values as a model built without touching it."""
    a = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=3)
    _ = (a.capabilities, a.r_parts(), a.aspect_slots, a.image_items())
    b = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=3)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_image_side_and_ctr_baselines_declare_what_they_offer(feats):
    from mdr.config import RunConfig, apply_overrides
    from mdr.models.capabilities import Capabilities, model_capabilities
    from mdr.models.image_factors import ImageFactorModel
    from mdr.training.registry import build_model

    cfg = apply_overrides(RunConfig(), {"model.name": "image_factors"})
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(tiny_cfg(), name="image_factors"))
    side = ImageFactorModel(cfg, feats)
    assert model_capabilities(side) == Capabilities(
        codes=True, slots=True, image_decoder=True, item_losses=True
    )
    assert side.decoder_network is side.image.decoder
    assert torch.equal(side.image_items(), torch.nonzero(side.image_mask, as_tuple=True)[0])
    deepfm = build_model("deepfm", apply_overrides(RunConfig(), {"model.name": "deepfm"}), feats)
    assert model_capabilities(deepfm) == Capabilities()
    assert model_capabilities(deepfm).missing("image_decoder") == ["image decoder"]


def test_model_capabilities_of_models_that_declare_nothing_or_too_much():
    from mdr.models.capabilities import Capabilities, model_capabilities

    class ItemLossModel(torch.nn.Module):
        trains_items = True

    class Boaster(torch.nn.Module):
        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(image_decoder=True)

    assert model_capabilities(torch.nn.Linear(2, 2)) == Capabilities()
    assert model_capabilities(ItemLossModel()) == Capabilities(item_losses=True)
    with pytest.raises(
        TypeError, match="declares 'image_decoder' but does not implement ImageDecoding"
    ):
        model_capabilities(Boaster())
    with pytest.raises(ValueError, match="unknown capabilities"):
        Capabilities().missing("decoder")


def test_id_embeddings_give_the_ctr_baselines_inputs(feats):
    """model.use_id_embedding: item id and category in every item's representation, the
    user id in the prediction MLP; predict and score agree; the user changes the score."""
    import dataclasses

    cats = torch.arange(N_ITEMS) % 3
    f = dataclasses.replace(feats, category=cats, n_categories=3)
    plain = MDRRecommender(tiny_cfg(), LossConfig(), f, seed=0)
    ids = MDRRecommender(tiny_cfg(use_id_embedding=True), LossConfig(), f, seed=0).eval()
    assert ids.rep_dim == plain.rep_dim + 2 * 6
    assert ids.user_emb.num_embeddings == f.n_users and ids.category_emb.num_embeddings == 3
    batch = tiny_batch()
    with torch.no_grad():
        reps = ids.encode_items(torch.arange(N_ITEMS))  # (I, r + 2 id_dim)
        torch.testing.assert_close(reps[:, -6:], ids.category_emb(cats))
        p = ids.predict(batch)
        s = ids.score(
            reps, batch["hist"], batch["hist_mask"], batch["cand"][:, None], batch["user"]
        )
        torch.testing.assert_close(s[:, 0], p, rtol=1e-5, atol=1e-5)
        other = ids.score(
            reps,
            batch["hist"],
            batch["hist_mask"],
            batch["cand"][:, None],
            (batch["user"] + 1) % f.n_users,
        )
    assert not torch.allclose(other, s)
    with pytest.raises(ValueError, match="needs the users' ids"):
        ids.score(reps, batch["hist"], batch["hist_mask"], batch["cand"][:, None])


def test_dropout_draws_nothing_when_off_and_masks_when_on(feats):
    off = MDRRecommender(tiny_cfg(), LossConfig(), feats, seed=0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in off.modules())
    on = MDRRecommender(tiny_cfg(dropout=0.5), LossConfig(), feats, seed=0)
    assert sum(isinstance(m, torch.nn.Dropout) for m in on.modules()) == 2  # mlp (16, 8)
    # the same weights: dropout layers hold no parameters and draw nothing at init
    for (k, a), (_, b) in zip(off.state_dict().items(), on.state_dict().items()):
        assert torch.equal(a, b), k
