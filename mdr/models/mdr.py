"""MDR: multimodal disentangled item representations under a DIN head (Eq. 1-22).

:class:`MDRRecommender` implements the :class:`mdr.models.base.RecModel` protocol, and
the explanations' protocols of :mod:`mdr.models.capabilities` that its config gives it.
Every model variant is a config, not a subclass:

=====================================  ======================================
config                                 model
=====================================  ======================================
defaults                               MDR (Algorithm 1 fusion)
``fusion: concat``                     no-fusion ablation / DIN++ (r = [s, z])
``use_text: false``                    beta-VAE-like image-only representation
``use_image: false``                   ABAE-like text-only representation
``use_image/use_text: false`` + ids    plain DIN on item-id embeddings
=====================================  ======================================

The joint objective (Eq. 22), each term logged on its own:

  loss = gamma * pred + visual * (rec + beta * kl) + text * (hinge + ortho * ortho_term)
         + eta * reg + mu * ws

Eq. 22 sums the item losses over the history items and the candidate of each
sample. We encode each UNIQUE item of a batch once and AVERAGE the item losses
over the batch's unique items: that is our estimator of Eq. 22's sum (it
differs by the per-batch constant factor |unique items| and by counting a
repeated item once). Precisely: rec and kl average over unique items with an
image (``image_mask``); the hinge over unique items with at least one token;
ws = sum over labelled slots and labelled items of the CE, divided by the
number of unique items with an image (Eq. 13 sums over the labelled attributes
of each item; unlabelled items contribute zero); reg and ortho do not depend on
the item, so their average is the term itself. With
``unique_item_encoding: false`` every history position and candidate is
encoded separately and the item losses average over the real positions (the
naive baseline of the speed benchmark; same logits in eval mode).

Scales (see :mod:`mdr.models.image_vae`): rec is half the squared error of the
standardised pixels AVERAGED over the 3*S*S values of an image, and kl is the KL SUMMED
over the N image-factor dims divided by the same 3*S*S, so rec + beta * kl is a beta-VAE's
negative ELBO per pixel value and ``beta`` means what it means in Higgins et al.
The text term uses t' = sum_j softmax(p)_j d_j (Eq. 14) and the ABAE hinge of
Eq. 15 with ``n_text_neg`` = g negatives per item.

In training mode the image factors are sampled (reparameterisation); in eval
mode, and always in :meth:`MDRRecommender.encode_items`, the posterior mean f
is used, so evaluation is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mdr.config import LossConfig, ModelConfig
from mdr.models.base import ItemFeatures
from mdr.models.capabilities import Capabilities
from mdr.models.din import DINHead, prediction_loss
from mdr.models.fusion import DisentangledFusion, FactorLayout
from mdr.models.image_vae import (
    ImageVAE,
    WeakSupervision,
    images_to_float,
    reparameterize,
)
from mdr.models.text_aspects import (
    PAD,
    TextAspectModel,
    aspect_hinge_loss,
    mean_word_vectors,
)

LOSS_TERMS = ("pred", "rec", "kl", "text", "ortho", "reg", "ws")


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` (n,) over ``mask`` (n,); zero when the mask is empty."""
    maskf = mask.float()
    return (values.float() * maskf).sum() / maskf.sum().clamp_min(1.0)


class MDRRecommender(nn.Module):
    """Multimodal disentangled representation + DIN recommender (Eq. 1-22)."""

    def __init__(
        self, model_cfg: ModelConfig, loss_cfg: LossConfig, features: ItemFeatures, seed: int = 0
    ) -> None:
        super().__init__()
        self.cfg, self.loss_cfg = model_cfg, loss_cfg
        self.n_items = features.n_items
        self._validate(model_cfg, features)
        # Parameters are initialised from `seed` alone, without touching the global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._build(model_cfg, features, seed)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _validate(cfg: ModelConfig, feats: ItemFeatures) -> None:
        if not (cfg.use_image or cfg.use_text or cfg.use_id_embedding):
            raise ValueError("model: enable at least one of use_image, use_text, use_id_embedding")
        if cfg.use_image and (feats.images is None or feats.image_mask is None):
            raise ValueError("model.use_image is true but the features carry no images")
        if cfg.use_image and not bool(feats.image_mask.any()):
            raise ValueError(
                "no item of this dataset has an image: train without the image "
                "side (--set model.use_image=false)"
            )
        if cfg.use_text and (feats.tokens is None or feats.word_vectors is None):
            raise ValueError("model.use_text is true but the features carry no text")
        names = [s.name for s in cfg.slots]
        if len(set(names)) != len(names) or "blackbox" in names:
            raise ValueError(f"model.slots: names must be unique and not 'blackbox': {names}")
        for s in cfg.slots:
            if s.dim < 1:
                raise ValueError(f"model.slots[{s.name}]: dim must be positive, got {s.dim}")
        if cfg.image_grad_items is not None and (
            cfg.image_grad_items < 1 or not cfg.unique_item_encoding
        ):
            raise ValueError(
                "model.image_grad_items: a positive count, with "
                "unique_item_encoding (the cache holds one code per item)"
            )
        if cfg.weak_supervision:
            for s in cfg.slots:
                if s.label is not None and (
                    s.label not in feats.labels or s.label not in feats.label_classes
                ):
                    raise ValueError(
                        f"model.slots[{s.name}]: weak label {s.label!r} not in "
                        f"the dataset's labels {sorted(feats.labels)}"
                    )

    def _build(self, cfg: ModelConfig, feats: ItemFeatures, seed: int) -> None:
        self.layout = FactorLayout(
            cfg.slots, cfg.image_blackbox_dim, cfg.text_blackbox_dim, cfg.use_image, cfg.use_text
        )
        self.fusion = DisentangledFusion(self.layout, cfg.fusion, cfg.alpha, cfg.blackbox_out_dim)
        has_content = cfg.use_image or cfg.use_text
        if has_content and self.fusion.r_dim == 0:
            raise ValueError("model: the content representation r is empty (no slots)")
        self.image: ImageVAE | None = None
        self.weak: WeakSupervision | None = None
        if cfg.use_image:
            assert feats.images is not None and feats.image_mask is not None
            self.register_buffer("images", feats.images, persistent=False)  # uint8 (I,S,S,3)
            self.register_buffer("image_mask", feats.image_mask.bool(), persistent=False)
            self.image = ImageVAE(
                feats.images, self.layout.s_dim, len(self.fusion.visual_index), cfg.image_channels
            )
            if cfg.image_grad_items is not None:  # the training cache of _encode_images
                # persistent: a resumed run continues from the same cache
                self.register_buffer("image_cache", torch.zeros(feats.n_items, self.layout.s_dim))
                self.register_buffer("image_cached", torch.zeros(feats.n_items, dtype=torch.bool))
            self.weak = self._weak_supervision("image", feats)
        self.text: TextAspectModel | None = None
        self.weak_text: WeakSupervision | None = None
        if cfg.use_text:
            self._build_text(cfg, feats, seed)
            self.weak_text = self._weak_supervision("text", feats)
        # the sparse features of the CTR baselines: item id and category in every item's
        # representation, the user id in the prediction MLP (Eq. 20)
        self.id_emb = nn.Embedding(feats.n_items, cfg.id_dim) if cfg.use_id_embedding else None
        self.category_emb: nn.Embedding | None = None
        self.user_emb: nn.Embedding | None = None
        if cfg.use_id_embedding:
            if feats.category is None:
                raise ValueError("model.use_id_embedding: the features carry no categories")
            self.register_buffer("item_category", feats.category.long(), persistent=False)
            self.category_emb = nn.Embedding(max(feats.n_categories, 1), cfg.id_dim)
            self.user_emb = nn.Embedding(max(feats.n_users, 1), cfg.id_dim)
        self.rep_dim = (self.fusion.r_dim if has_content else 0) + (
            2 * cfg.id_dim if cfg.use_id_embedding else 0
        )
        self.din = DINHead(
            self.rep_dim,
            cfg.att_hidden,
            cfg.mlp_hidden,
            cfg.dropout,
            user_dim=cfg.id_dim if cfg.use_id_embedding else 0,
        )

    def _weak_supervision(self, modality: str, feats: ItemFeatures) -> WeakSupervision | None:
        """The classifiers of the labelled slots on their ``modality`` ("image": columns of
        s, "text": columns of z) part: a weak label supervises every part of its slot (Eq.
        12-13 on the image factors, the same classifier-on-factors on the text factors), so
        that the attribute sits in its slot whichever modality carries it. None without
        ``model.weak_supervision`` or without a labelled slot of that modality."""
        if not self.cfg.weak_supervision:
            return None
        image = modality == "image"
        slots = self.layout.image_slots if image else self.layout.text_slots
        labelled = [sl for sl in slots if sl.label is not None]
        if not labelled:
            return None
        cols = self.layout.s_slices() if image else self.layout.z_slices()
        return WeakSupervision(
            {sl.name: (cols[sl.name], feats.label_classes[sl.label]) for sl in labelled},
            {sl.name: feats.labels[sl.label] for sl in labelled},
        )

    def _build_text(self, cfg: ModelConfig, feats: ItemFeatures, seed: int) -> None:
        assert feats.tokens is not None and feats.word_vectors is not None
        tokens = feats.tokens[:, : cfg.max_text_len].long()
        wv = feats.word_vectors.float()
        out_dims = [s.dim for s in self.layout.text_slots] + [self.layout.z_bb]
        self.text = TextAspectModel(
            wv,
            out_dims,
            cfg.text_hidden,
            cfg.n_aspects,
            self.fusion.text_columns(),
            cfg.aspect_decoder,
            seed,
            words=tokens[tokens != PAD],
        )
        self.register_buffer("tokens", tokens, persistent=False)  # (I, L)
        has_text = (tokens != PAD).any(dim=1)
        text_items = torch.nonzero(has_text).squeeze(1)
        if len(text_items) < 2:
            raise ValueError(
                "model.use_text: need at least two items with text for the "
                "negative sentences of Eq. 15"
            )
        rank = torch.full((feats.n_items,), -1, dtype=torch.long)
        rank[text_items] = torch.arange(len(text_items))
        self.register_buffer("has_text", has_text, persistent=False)
        self.register_buffer("text_items", text_items, persistent=False)
        self.register_buffer("text_rank", rank, persistent=False)
        # n_j of Eq. 15: the mean word vector of each item's text (word vectors are frozen)
        self.register_buffer("mean_wv", mean_word_vectors(tokens, wv), persistent=False)

    # ------------------------------------------------------------------ item encoding
    def _encode(self, items: Tensor, sample: bool) -> dict[str, Tensor]:
        """Encode items (n,) -> dict with r (n, rep_dim) and the intermediates the item
        losses need: ``fresh`` (m,), the positions of ``items`` whose images went through
        the encoder with gradients, with their x, f, logvar (m, ...); r_content (n, r_dim),
        what the decoders reconstruct from; t (n, d)."""
        out: dict[str, Tensor] = {}
        s = z = f_rec = None
        if self.image is not None:
            s, f_rec = self._encode_images(items, sample, out)
        if self.text is not None:
            t, z = self.text.encode(self.tokens[items])  # (n, d), (n, q), Eq. 2-3
            out.update(t=t, z=z)
        parts = []
        if s is not None or z is not None:
            r = self.fusion(s, z)  # (n, r_dim), Algorithm 1
            out["r_content"] = r  # what the decoders reconstruct from (a posterior sample)
            if sample and s is not None and not self.cfg.recommend_from_sample:
                # the recommender reads the posterior MEAN, exactly as at evaluation; a
                # sample would feed the DIN head noise of std ~1 while the KL keeps the
                # posterior wide (measured: image-only valid GAUC ~0.5 that way)
                r = self.fusion(f_rec, z)
            parts.append(r)
        if self.id_emb is not None and self.category_emb is not None:
            parts.append(self.id_emb(items))  # (n, id_dim)
            parts.append(self.category_emb(self.item_category[items]))  # (n, id_dim)
        out["r"] = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        return out

    def _encode_images(
        self, items: Tensor, sample: bool, out: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Image factors of ``items`` (n,): s for the decoders (a sample in training) and
        the posterior means f the recommender reads, each (n, N) (Eq. 1); x, f, logvar and
        ``fresh`` go into ``out``.

        Training with ``model.image_grad_items = k``: only a random k of the items go
        through the encoder (with gradients); the others read their posterior means from
        the cache of their latest encoding (refreshed as they are drawn; items never
        encoded are encoded without gradients first). The gradient of the recommendation
        loss through the fresh encodings is scaled by n / k, so that its expectation over
        the draw is the full gradient's; the item losses are averages over the fresh
        items, unbiased estimates of the averages over all n. Evaluation always encodes
        every item afresh.
        """
        n = items.shape[0]
        k = self.cfg.image_grad_items
        if not sample or k is None or n <= k:
            x = images_to_float(self.images[items])  # (n, 3, S, S)
            f, logvar = self.image(x)  # (n, N) each, Eq. 1
            out.update(x=x, f=f, logvar=logvar, fresh=torch.arange(n, device=items.device))
            return (reparameterize(f, logvar) if sample else f), f
        fresh = torch.randperm(n, device=items.device)[:k].sort().values  # (k,)
        x = images_to_float(self.images[items[fresh]])  # (k, 3, S, S)
        f_new, logvar = self.image(x)  # (k, N), Eq. 1
        f_new = f_new.float()  # the cache is fp32 (the encoder may run under autocast)
        stale = ~self.image_cached[items]
        stale[fresh] = False
        if bool(stale.any()):  # first sight of these items: their means, without gradients
            with torch.no_grad():
                first = items[stale]
                self.image_cache[first] = self.image(images_to_float(self.images[first]))[0].float()
                self.image_cached[first] = True
        f = self.image_cache[items].clone()  # (n, N), no gradient
        scale = n / k
        f_rec = f.index_put((fresh,), f_new * scale - f_new.detach() * (scale - 1.0))
        s = f.index_put((fresh,), reparameterize(f_new, logvar))
        with torch.no_grad():
            self.image_cache[items[fresh]] = f_new.detach()
            self.image_cached[items[fresh]] = True
        out.update(x=x, f=f_new, logvar=logvar, fresh=fresh)
        return s, f_rec

    def encode_items(self, items: Tensor, chunk: int = 2048) -> Tensor:
        """Deterministic representations h = MDR(sentence, x) of Eq. 16-17 (posterior mean f,
        no sampling): (n, rep_dim)."""
        reps = [
            self._encode(items[i : i + chunk], sample=False)["r"]
            for i in range(0, items.shape[0], chunk)
        ]
        if not reps:
            return torch.zeros((0, self.rep_dim), device=items.device)
        return torch.cat(reps)

    def r_columns(self) -> dict[str, list[int]]:
        """Slot name -> its columns of :meth:`encode_items`' output (``"blackbox"`` too)."""
        return self.fusion.r_columns()

    @property
    def image_columns(self) -> Tensor:
        """The columns of r that the image decoder reads (Eq. 9): long (Dv,)."""
        return self.fusion.visual_index

    def decode_images(self, r: Tensor) -> Tensor:
        """Images (n, 3, S, S) in pixel units decoded from representations r (n, rep_dim)
        (Eq. 9); only for models with an image side."""
        if self.image is None:
            raise ValueError("this model has no image side (model.use_image is false)")
        return self.image.decode(r[:, self.image_columns])

    # ------------------------------------------------------------------ explanations
    @property
    def capabilities(self) -> Capabilities:
        """What the explanations can read off this model (:mod:`mdr.models.capabilities`):
        slots, image decoder and text aspects as its config has them, the DIN attention
        always."""
        content = self.image is not None or self.text is not None
        return Capabilities(
            codes=True,
            slots=content,
            image_decoder=self.image is not None,
            attention=True,
            text_aspects=self.text is not None,
            item_losses=self.trains_items,
        )

    def _image_side(self) -> ImageVAE:
        if self.image is None:
            raise ValueError("this model has no image side (model.use_image is false)")
        return self.image

    def _text_side(self) -> TextAspectModel:
        if self.text is None:
            raise ValueError("this model has no text side (model.use_text is false)")
        return self.text

    @property
    def decoder_network(self) -> nn.Module:
        """The image decoder of Eq. 9: r[:, image_columns] (n, Dv) -> (n, 3, S, S)."""
        return self._image_side().decoder

    def image_items(self) -> Tensor:
        """The items that have an image: long (n,)."""
        self._image_side()
        return torch.nonzero(self.image_mask, as_tuple=True)[0]

    def item_images(self, items: Tensor) -> Tensor:
        """The images of ``items`` (n,): float (n, 3, S, S) in [0, 1]."""
        self._image_side()
        return images_to_float(self.images[items])

    def r_parts(self) -> dict[str, list[int]]:
        """Named parts of r: the slots and ``"blackbox"`` that have columns and, with an id
        embedding appended to the content, ``"id_embedding"``. Empty for id embeddings
        alone (``din``)."""
        if not (self.cfg.use_image or self.cfg.use_text):
            return {}
        parts = {k: v for k, v in self.fusion.r_columns().items() if v}
        if self.id_emb is not None:
            parts["id_embedding"] = list(range(self.fusion.r_dim, self.rep_dim))  # item, category
        return parts

    def attention_weights(self, h_hist: Tensor, hist_mask: Tensor, h_cand: Tensor) -> Tensor:
        """The DIN weights wh (B, C, H) of Eq. 18 (no softmax), zero where ``hist_mask``
        (B, H) is False, for ``h_hist`` (B, H, D) and candidates ``h_cand`` (B, C, D)."""
        return self.din.attention(h_hist, hist_mask, h_cand)

    @property
    def aspect_matrix(self) -> Tensor:
        """D (K, d) of Eq. 14."""
        return self._text_side().D

    @property
    def word_vectors(self) -> Tensor:
        """The frozen word vectors (V, d) of the text side."""
        return self._text_side().word_vectors

    @property
    def aspect_decoder(self) -> str:
        """``"per_slot"`` (Eq. 14 as printed) or ``"dense"`` (``model.aspect_decoder``)."""
        return self._text_side().decoder

    @property
    def aspect_slots(self) -> list[str]:
        """The slot of each aspect under ``"per_slot"`` (``"any"`` each when dense)."""
        return list(self._text_side().aspect_slots)

    def text_columns(self) -> dict[str, list[int]]:
        """Each text slot, then ``"blackbox"``, -> its columns of r_text = r[:, text_index]."""
        return self.fusion.text_columns()

    def aspect_weights(self) -> Tensor:
        """W (K, T) of the dense aspect decoder p = W r_text + b."""
        text = self._text_side()
        if text.decoder != "dense":
            raise ValueError("the per-slot aspect decoder has no dense weights W")
        return text.p_fc.weight.detach()

    @torch.no_grad()
    def text_representations(self, chunk: int = 1024) -> Tensor:
        """r_text (n, T) of every item WITH text, from posterior means (no sampling)."""
        self._text_side()
        items = self.text_items  # (n,)
        parts = []
        for i in range(0, items.shape[0], chunk):
            r = self._encode(items[i : i + chunk], sample=False)["r_content"]  # (c, r_dim)
            parts.append(r[:, self.fusion.text_index])  # (c, T)
        return torch.cat(parts).float()

    # ------------------------------------------------------------------ item losses
    def _sample_negatives(self, items: Tensor, g: int) -> Tensor:
        """g random OTHER items with text per item (n, g), for n_j in Eq. 15."""
        n_text = self.text_items.shape[0]
        k = torch.randint(0, n_text - 1, (items.shape[0], g), device=items.device)
        own = self.text_rank[items].unsqueeze(1)  # (n, 1); -1 when the item has no text
        k = k + ((own >= 0) & (k >= own)).long()  # skip the item itself
        return self.text_items[k]

    def _item_losses(
        self, items: Tensor, enc: dict[str, Tensor], valid: Tensor
    ) -> dict[str, Tensor]:
        """rec, kl, text (hinge), ortho, reg, ws, averaged as the module docstring says."""
        zero = enc["r"].new_zeros((), dtype=torch.float32)
        out = dict.fromkeys(("rec", "kl", "text", "ortho", "reg", "ws"), zero)
        r = enc.get("r_content")
        if self.image is not None and r is not None:
            fresh = enc["fresh"]  # the items encoded with gradients (all, without the cache)
            img = valid[fresh] & self.image_mask[items[fresh]]  # (m,)
            rec_idx = self._recon_subset(img)  # items whose image is decoded this step
            r_vis = r[fresh[rec_idx]][:, self.fusion.visual_index]
            x_rec = self.image.decode(r_vis)  # Eq. 9
            out["rec"] = self.image.rec(enc["x"][rec_idx], x_rec).mean() if len(rec_idx) else zero
            out["kl"] = _masked_mean(self.image.kl(enc["f"], enc["logvar"]), img)  # Eq. 10
            if self.weak is not None:
                out["ws"] = self.weak(items[fresh], enc["f"], img)  # Eq. 12-13
        if self.text is not None and r is not None:
            txt = valid & self.has_text[items]
            t_rec = self.text.reconstruct(r[:, self.fusion.text_index])  # (n, d), Eq. 14
            neg = self.mean_wv[self._sample_negatives(items, self.loss_cfg.n_text_neg)]
            out["text"] = _masked_mean(aspect_hinge_loss(t_rec, enc["t"], neg), txt)  # Eq. 15
            out["ortho"] = self.text.orthogonality()
            if self.weak_text is not None:  # Eq. 12-13 on the text factors z of a batch
                out["ws"] = out["ws"] + self.weak_text(items, enc["z"], txt)
        if self.fusion.blackbox is not None:
            out["reg"] = self.fusion.information_constraint()  # Eq. 4
        return out

    def _recon_subset(self, img: Tensor) -> Tensor:
        """Indices of the items decoded for loss_rec: all items with an image, or a random
        subset of ``loss.max_recon_items`` of them (an unbiased estimate of the same mean
        that spares the decoder, the costliest part of a step on the CPU)."""
        idx = torch.nonzero(img, as_tuple=True)[0]
        cap = self.loss_cfg.max_recon_items
        if cap is None or len(idx) <= cap:
            return idx
        return idx[torch.randperm(len(idx), device=idx.device)[:cap]]

    # ------------------------------------------------------------------ batches
    def _batch_reps(
        self, batch: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor], Tensor]:
        """Encode a batch's items: h_k = MDR(sentence_k, x_k) of every history item (Eq. 16)
        and h_i of the candidate (Eq. 17), each unique item once. Returns h_hist (B,H,D),
        h_cand (B,D), the encoded items, their encodings and the mask of items that count
        in the item losses."""
        hist, mask, cand = batch["hist"], batch["hist_mask"].bool(), batch["cand"]
        B, H = hist.shape
        sample = self.training
        if self.cfg.unique_item_encoding:
            items, inverse = torch.unique(torch.cat([hist[mask], cand]), return_inverse=True)
            enc = self._encode(items, sample)
            reps = enc["r"]  # (n_unique, D)
            n_hist = int(mask.sum())
            h_hist = reps.new_zeros((B, H, reps.shape[1]))
            h_hist[mask] = reps[inverse[:n_hist]]  # (B, H, D)
            h_cand = reps[inverse[n_hist:]]  # (B, D)
            valid = torch.ones_like(items, dtype=torch.bool)
        else:  # naive: every position encoded on its own
            items = torch.cat([hist.reshape(-1), cand])
            enc = self._encode(items, sample)
            reps = enc["r"]
            h_hist = reps[: B * H].view(B, H, -1)
            h_cand = reps[B * H :]
            valid = torch.cat([mask.reshape(-1), torch.ones_like(cand, dtype=torch.bool)])
        return h_hist, h_cand, items, enc, valid

    def loss_terms(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every term of Eq. 22, undetached (fp32 scalars), plus the logits."""
        h_hist, h_cand, items, enc, valid = self._batch_reps(batch)
        logits = self.din(
            h_hist, batch["hist_mask"].bool(), h_cand.unsqueeze(1), self._user(batch["user"])
        )[:, 0]
        terms = {"pred": prediction_loss(logits, batch["label"])}  # Eq. 21
        terms.update(self._item_losses(items, enc, valid))
        terms["logits"] = logits
        return terms

    def combine(self, terms: dict[str, Tensor]) -> Tensor:
        """The joint objective of Eq. 22 (with Eq. 11 and Eq. 15 inside)."""
        lc = self.loss_cfg
        return (
            lc.gamma * terms["pred"]
            + lc.visual * (terms["rec"] + lc.beta * terms["kl"])  # Eq. 11 (= Eq. 7)
            + lc.text * (terms["text"] + lc.ortho * terms["ortho"])
            + lc.eta * terms["reg"]
            + lc.mu * terms["ws"]
        )

    @property
    def trains_items(self) -> bool:
        """Whether a batch of items alone has losses to train (the item losses of Eq. 22)."""
        return self.image is not None or self.text is not None

    def item_loss_terms(self, items: Tensor) -> dict[str, Tensor]:
        """The item losses of Eq. 22 for the items (n,) alone, without users (pred = 0):
        what an item batch trains (the item-level pretraining of :mod:`mdr.training.train`)."""
        enc = self._encode(items, sample=self.training)
        terms = self._item_losses(items, enc, torch.ones_like(items, dtype=torch.bool))
        terms["pred"] = enc["r"].new_zeros((), dtype=torch.float32)
        return terms

    def calculate_loss(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{"loss": Eq. 22}`` plus each term detached: pred rec kl text ortho reg ws. A
        batch of items alone (``{"item"}``, no users) gives the item losses only."""
        terms = (
            self.item_loss_terms(batch["item"])
            if "label" not in batch
            else (self.loss_terms(batch))
        )
        out = {"loss": self.combine(terms)}
        out.update({k: terms[k].detach() for k in LOSS_TERMS})
        return out

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """Logits (B,) of the batch's (history, candidate) pairs."""
        h_hist, h_cand, _, _, _ = self._batch_reps(batch)
        return self.din(
            h_hist, batch["hist_mask"].bool(), h_cand.unsqueeze(1), self._user(batch["user"])
        )[:, 0]

    def score(
        self,
        reps: Tensor,
        hist: Tensor,
        hist_mask: Tensor,
        cands: Tensor,
        user: Tensor | None = None,
    ) -> Tensor:
        """Logits (B, C) of ``cands`` (B, C) given ``hist`` (B, H), from cached ``reps``
        (I, D) of :meth:`encode_items`. ``user`` (B,) is read with ``use_id_embedding``."""
        h_hist = reps[hist]  # (B, H, D); padded positions get weight 0 in Eq. 18
        return self.din(h_hist, hist_mask.bool(), reps[cands], self._user(user))  # (B, C)

    def _user(self, user: Tensor | None) -> Tensor | None:
        """The user-id embeddings (B, id_dim) the prediction MLP reads, or None."""
        if self.user_emb is None:
            return None
        if user is None:
            raise ValueError("model.use_id_embedding: scoring needs the users' ids")
        return self.user_emb(user)


__all__ = ["LOSS_TERMS", "MDRRecommender"]
