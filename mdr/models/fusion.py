"""Multimodal disentangled fusion (Algorithm 1) and the information constraint (Eq. 4).

Layout of the factor vectors (slot order is the config's order):

- image factors  s = [u_j for slots with an image part] + [s_blackbox]
  (kinds visual_dominant, text_dominant, visual_only);
- text factors   z = [v_j for slots with a text part]   + [z_blackbox]
  (kinds visual_dominant, text_dominant, text_only);
- fused          r = [r_j for every slot] + [r_blackbox]        (Algorithm 1, line 8).

Modes:

- ``algorithm1`` with both modalities: Algorithm 1 exactly (line numbers below);
  each "fc(fc(.))" is Linear -> ReLU -> Linear (an fc layer with its activation,
  the outer one linear because it feeds a residual sum).
- ``concat``: r = [s, z], no fusion layers (the no-fusion ablation and DIN++).
- one modality only (``use_image`` xor ``use_text``): r = s or r = z, that
  modality's factors only (beta-VAE-like / ABAE-like models).

Which parts of r feed which decoder: the image decoder (Eq. 9) reads the slots
with an image part plus r_blackbox; the text decoder (Eq. 14) reads the slots
with a text part plus r_blackbox. In ``concat`` mode they read s and z.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mdr.config import SlotConfig

IMAGE_KINDS = frozenset({"visual_dominant", "text_dominant", "visual_only"})
TEXT_KINDS = frozenset({"visual_dominant", "text_dominant", "text_only"})


@dataclass(frozen=True)
class FactorLayout:
    """Where each slot lives in s and z (columns), given which modalities are on."""

    slots: tuple[SlotConfig, ...]
    image_blackbox_dim: int
    text_blackbox_dim: int
    use_image: bool
    use_text: bool

    @property
    def image_slots(self) -> tuple[SlotConfig, ...]:
        return tuple(s for s in self.slots if s.kind in IMAGE_KINDS) if self.use_image else ()

    @property
    def text_slots(self) -> tuple[SlotConfig, ...]:
        return tuple(s for s in self.slots if s.kind in TEXT_KINDS) if self.use_text else ()

    @property
    def s_bb(self) -> int:
        return self.image_blackbox_dim if self.use_image else 0

    @property
    def z_bb(self) -> int:
        return self.text_blackbox_dim if self.use_text else 0

    @property
    def s_dim(self) -> int:
        return sum(s.dim for s in self.image_slots) + self.s_bb

    @property
    def z_dim(self) -> int:
        return sum(s.dim for s in self.text_slots) + self.z_bb

    @staticmethod
    def _slices(slots: tuple[SlotConfig, ...], bb: int) -> dict[str, slice]:
        out, start = {}, 0
        for s in slots:
            out[s.name] = slice(start, start + s.dim)
            start += s.dim
        out["blackbox"] = slice(start, start + bb)
        return out

    def s_slices(self) -> dict[str, slice]:
        """Slot name -> columns of s (``"blackbox"`` for s_blackbox)."""
        return self._slices(self.image_slots, self.s_bb)

    def z_slices(self) -> dict[str, slice]:
        """Slot name -> columns of z (``"blackbox"`` for z_blackbox)."""
        return self._slices(self.text_slots, self.z_bb)


def _fc_fc(in_dim: int, out_dim: int) -> nn.Sequential:
    """fc(fc(x)) of Algorithm 1: Linear -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))


class DisentangledFusion(nn.Module):
    """r = Fusion(s, z): Algorithm 1, plain concatenation, or a single modality."""

    def __init__(
        self,
        layout: FactorLayout,
        mode: str = "algorithm1",
        alpha: float = 0.5,
        blackbox_out_dim: int = 8,
    ) -> None:
        super().__init__()
        if mode not in ("algorithm1", "concat"):
            raise ValueError(f"unknown fusion mode {mode!r}; use 'algorithm1' or 'concat'")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1] (Algorithm 1, line 3), got {alpha}")
        self.layout = layout
        self.alpha = alpha
        both = layout.use_image and layout.use_text
        self.mode = mode if both else "single"
        self.shared = nn.ModuleDict()
        self.blackbox: nn.Sequential | None = None
        if self.mode == "algorithm1":
            for s in layout.slots:
                if s.kind in ("visual_dominant", "text_dominant"):
                    self.shared[s.name] = _fc_fc(2 * s.dim, s.dim)  # lines 3-4
            if layout.s_bb + layout.z_bb > 0:
                self.blackbox = _fc_fc(layout.s_bb + layout.z_bb, blackbox_out_dim)  # line 7
        self._build_index(blackbox_out_dim)

    # ------------------------------------------------------------------ layout of r
    def _build_index(self, bb_out: int) -> None:
        """Record r's width and which of its columns are visual- / text-related."""
        lay = self.layout
        vis: list[int] = []
        txt: list[int] = []
        if self.mode == "algorithm1":
            start = 0
            for s in lay.slots:
                cols = list(range(start, start + s.dim))
                if s.kind in IMAGE_KINDS:
                    vis += cols
                if s.kind in TEXT_KINDS:
                    txt += cols
                start += s.dim
            if self.blackbox is not None:
                cols = list(range(start, start + bb_out))
                vis += cols
                txt += cols
                start += bb_out
            self.r_dim = start
        else:  # concat, or a single modality: r = [s, z] (one of them possibly empty)
            vis = list(range(lay.s_dim))
            txt = list(range(lay.s_dim, lay.s_dim + lay.z_dim))
            self.r_dim = lay.s_dim + lay.z_dim
        self.register_buffer("visual_index", torch.tensor(vis, dtype=torch.long), persistent=False)
        self.register_buffer("text_index", torch.tensor(txt, dtype=torch.long), persistent=False)

    def r_columns(self) -> dict[str, list[int]]:
        """Slot name -> the columns of r that carry it (``"blackbox"`` for the black box).

        Algorithm 1: each slot's r_j, and r_blackbox. Concat or one modality
        (r = [s, z]): a slot's image part u_j and its text part v_j together.
        """
        lay = self.layout
        if self.mode == "algorithm1":
            out, start = {}, 0
            for s in lay.slots:
                out[s.name] = list(range(start, start + s.dim))
                start += s.dim
            out["blackbox"] = list(range(start, self.r_dim))
            return out
        cols: dict[str, list[int]] = {}
        for part, offset in ((lay.s_slices(), 0), (lay.z_slices(), lay.s_dim)):
            for name, sl in part.items():
                cols.setdefault(name, []).extend(range(offset + sl.start, offset + sl.stop))
        order = [s.name for s in lay.slots] + ["blackbox"]
        return {n: cols[n] for n in order if cols.get(n)}

    def text_columns(self) -> dict[str, list[int]]:
        """Each text slot (in order), then ``"blackbox"``, -> its columns of r_text =
        r[:, text_index], the part of r the text decoder reads (Eq. 14).

        Algorithm 1: a slot's r_j, and r_blackbox; concat or text only: a slot's v_j and
        z_blackbox (its image part u_j is not text-related)."""
        lay = self.layout
        pos = {c: k for k, c in enumerate(self.text_index.tolist())}
        if self.mode == "algorithm1":
            named = self.r_columns()
            out = {s.name: [pos[c] for c in named[s.name]] for s in lay.text_slots}
            out["blackbox"] = [pos[c] for c in named.get("blackbox", []) if c in pos]
            return out
        z = lay.z_slices()
        offset = lay.s_dim  # r = [s, z]
        return {name: [pos[offset + c] for c in range(sl.start, sl.stop)] for name, sl in z.items()}

    # ------------------------------------------------------------------ forward
    def forward(self, s: Tensor | None, z: Tensor | None) -> Tensor:
        """``s`` (n, s_dim) image factors, ``z`` (n, z_dim) text factors -> r (n, r_dim)."""
        if self.mode != "algorithm1":
            return torch.cat([x for x in (s, z) if x is not None and x.shape[-1] > 0], dim=-1)
        assert s is not None and z is not None
        s_sl, z_sl = self.layout.s_slices(), self.layout.z_slices()
        parts: list[Tensor] = []
        for slot in self.layout.slots:
            u = s[:, s_sl[slot.name]] if slot.kind in IMAGE_KINDS else None  # u_j (n, dim)
            v = z[:, z_sl[slot.name]] if slot.kind in TEXT_KINDS else None  # v_j (n, dim)
            if slot.kind == "visual_dominant":  # line 3: u_j + fc(fc([u_j, a v_j]))
                parts.append(u + self.shared[slot.name](torch.cat([u, self.alpha * v], -1)))
            elif slot.kind == "text_dominant":  # line 4: v_j + fc(fc([a u_j, v_j]))
                parts.append(v + self.shared[slot.name](torch.cat([self.alpha * u, v], -1)))
            elif slot.kind == "visual_only":  # line 5: r_j = u_j
                parts.append(u)
            else:  # line 6, text_only: r_j = v_j
                parts.append(v)
        if self.blackbox is not None:  # line 7: fc(fc([s_bb, z_bb]))
            parts.append(
                self.blackbox(torch.cat([s[:, s_sl["blackbox"]], z[:, z_sl["blackbox"]]], -1))
            )
        return torch.cat(parts, dim=-1)  # line 8

    def information_constraint(self) -> Tensor:
        """loss_reg = ||W||_2 (Eq. 4): L2 norm of ALL parameters (weights and biases) of
        the two black-box fc layers; zero when there is no black-box fusion."""
        if self.blackbox is None:
            return self.visual_index.new_zeros((), dtype=torch.float32)
        flat = torch.cat([p.float().reshape(-1) for p in self.blackbox.parameters()])
        return torch.linalg.vector_norm(flat)


__all__ = ["IMAGE_KINDS", "TEXT_KINDS", "DisentangledFusion", "FactorLayout"]
