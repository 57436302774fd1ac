"""The sky learned in training (``--sky auto|on|off``): a background at infinity behind the
splats, so that the sky and the far background need no huge far splats and reach Unreal as its
own sky (:mod:`splatkit.sky`).

- **Start**: every texel at the mean colour of the training photos.
- **Model**: an equirectangular colour map (``sky_width`` x ``sky_width / 2`` texels, colour =
  sigmoid of a logit per texel and channel), sampled bilinearly per pixel by the ray's direction
  (longitude wraps: no seam) and composited behind the render with its final transmittance:
  ``C = C_splats + T_final * sky(d)``. The splats' gradient includes the background through
  ``T_final`` (the rasterizers return alpha with gradients; pinned against the dense reference
  in float64, tests/test_train_sky.py). The same on the CPU rasterizer and on gsplat.
- **Frame**: +Z up from the training cameras (:func:`splatkit.up.camera_up`), +X their
  mean viewing direction, so the panorama's poles are straight up and down.
- **Optimiser**: its own Adam at ``sky_lr`` (eps 1e-15), constant.
- **Seen**: each texel's weight in the training pixels that showed the sky (bilinear weight x
  ``T_final``), counted from the decision step on (by then densification has made near
  geometry opaque); texels below :data:`splatkit.sky.SEEN_MIN` are filled from their
  neighbours in the panorama the export writes.
- **Near geometry stays splats**: the sky only shows where the splats' alpha leaves room, and it
  is one colour per direction for every camera, so what moves between photos (parallax) can
  only be explained by splats. While the sky is on, the random background is not used (the sky
  is the background).
- **auto**: the sky is trained from the start; at the decision step (the end of densification,
  at most a third of the run) it is kept if at least :data:`MIN_SKY_SHARE` of the training
  pixels show it (``T_final > 0.5``, each view's latest render), else it is switched off for the
  rest of the run (the random background returns) and no sky is written: a closed room has no
  pixel at infinity.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .. import panorama as P
from ..render import View
from ..sky import SkyMap, composite, pixel_directions

SKY_MODES = ("auto", "on", "off")
#: auto keeps the sky when at least this fraction of training pixels shows it at the decision.
MIN_SKY_SHARE = 0.02
#: A pixel "shows the sky" when the splats leave it this much transmittance.
SHOWS_SKY_T = 0.5


def sky_frame(world_to_cam: Tensor) -> Tensor:
    """World -> sky rotation ``[3, 3]`` (rows: forward, left, up) from the cameras alone."""
    from ..up import basis_from_up_forward, camera_up, estimate_forward

    w2c = world_to_cam.detach().double().cpu()
    R, t = w2c[:, :3, :3], w2c[:, :3, 3]
    centers = -(R.transpose(1, 2) @ t[..., None])[..., 0]
    up = camera_up(w2c, centers).vector
    return basis_from_up_forward(up, estimate_forward(w2c, up))


def decision_step(steps: int, refine_stop: int) -> int:
    """When auto decides: the end of densification, at most a third of the run (at least 1)."""
    stop = int(refine_stop) if refine_stop > 0 else int(steps)
    return max(1, min(stop, int(steps) // 3))


class Sky:
    """The sky's texels, their Adam, and (auto) the decision to keep it."""

    def __init__(self, rotation: Tensor, width: int, lr: float, mode: str, decide_at: int,
                 n_views: int, device: str | torch.device = "cpu") -> None:  # fmt: skip
        if mode not in SKY_MODES:
            raise ValueError(mode)
        width = max(8, int(width) // 2 * 2)
        self.rotation = rotation.detach().double().cpu()
        self._R = self.rotation.float().to(device)
        self.logits = torch.nn.Parameter(torch.zeros(width // 2, width, 3, device=device))
        self.optimizer = torch.optim.Adam([self.logits], lr=lr, eps=1e-15)
        self.seen = torch.zeros(width // 2 * width, device=device)
        self.mode, self.decide_at = mode, int(decide_at)
        self.active = mode != "off"
        self.decided = mode != "auto"
        self.shares = torch.full((n_views,), float("nan"))
        self.messages: list[str] = []

    @torch.no_grad()
    def init_from_photos(self, images) -> None:
        """Start every texel at the mean colour of the training photos. Not each direction's own
        mean: a direction only one photo sees (the background of a capture around an object)
        would start as a copy of that photo, a sky that explains near content from the first
        step (seen on an 8-camera ring: the object reappeared in the panorama)."""
        total, n = torch.zeros(3, dtype=torch.float64), 0
        for k in range(len(images)):
            img = images[k].double().cpu()
            total += img.reshape(-1, 3).sum(0)
            n += img.shape[0] * img.shape[1]
        if n:
            mean = (total / n).clamp(0.02, 0.98).float()
            self.logits.copy_(torch.logit(mean).to(self.logits.device).expand_as(self.logits))

    def colors(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def composite(self, k: int, view: View, image: Tensor, alpha: Tensor) -> Tensor:
        """Training view ``k``'s render with the sky behind it; records what it showed."""
        d = pixel_directions(view).to(image.dtype) @ self._R.to(image.dtype).T
        h, w = self.logits.shape[:2]
        idx, wts = P.bilinear_taps(h, w, d)
        background = P.gather(self.colors(), idx, wts)
        with torch.no_grad():
            t = (1.0 - alpha.detach()).to(wts.dtype)
            self.seen.index_add_(0, idx.reshape(-1), (wts * t).reshape(-1))
            self.shares[k] = float((t > SHOWS_SKY_T).float().mean())
        return composite(image, alpha, background)

    def share(self) -> float:
        seen = self.shares[~torch.isnan(self.shares)]
        return float(seen.mean()) if len(seen) else 0.0

    def step(self, step: int) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if step + 1 == self.decide_at:
            # What photos see of the sky from here on: texels that near geometry covers by the
            # end of densification were seen only through the early, transparent splats.
            self.seen.zero_()
        if not self.decided and step + 1 >= self.decide_at:
            self.decide()

    def decide(self) -> None:
        share = self.share()
        self.decided, self.active = True, share >= MIN_SKY_SHARE
        if self.active:
            self.messages.append(f"sky: kept ({100 * share:.1f}% of the training pixels show it); "
                                 "it is exported as Unreal's sky.")  # fmt: skip
        else:
            self.messages.append(f"sky: off (only {100 * share:.1f}% of the training pixels show "
                                 "it: no sky in this capture).")  # fmt: skip

    def sky_map(self) -> SkyMap | None:
        """The learned sky, or None when it is off."""
        if not self.active:
            return None
        h, w = self.logits.shape[:2]
        return SkyMap(colors=self.colors().detach().float().cpu(),
                      seen=self.seen.detach().reshape(h, w).float().cpu(),
                      rotation=self.rotation.clone(), share=self.share())  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"logits": self.logits.detach().cpu().clone(), "optimizer": self.optimizer.state_dict(),
                "seen": self.seen.detach().cpu().clone(), "rotation": self.rotation.clone(),
                "active": self.active, "decided": self.decided, "shares": self.shares.clone()}  # fmt: skip

    def load_state_dict(self, d: dict[str, Any]) -> None:
        with torch.no_grad():
            self.logits.copy_(d["logits"].to(self.logits.device))
            self.seen.copy_(d["seen"].to(self.seen.device))
        self.optimizer.load_state_dict(d["optimizer"])
        self.rotation = d["rotation"].double()
        self._R = self.rotation.float().to(self.logits.device)
        self.active, self.decided = bool(d["active"]), bool(d["decided"])
        self.shares = d["shares"].clone()
