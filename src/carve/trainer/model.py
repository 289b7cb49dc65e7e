"""The event-grounded world-action model: one transformer backbone, three modes.

Tokens. Every input is projected to a `d_model` token: the event-start visual embedding,
the proprioceptive state (at the event start, or at the chunk start), and a text token (the
event's caption embedding in event mode; the hashed task embedding in unified and chunk
modes). Learned query tokens read the outputs: one per action position (`T = max_len` in
event mode, `T = H = chunk_len` otherwise), a future-observation query, and (unified) a
language query. States and actions are normalised with statistics stored as buffers. With
`relative_actions` = N the first N action dimensions are offsets from the first N state values at
the plan's start (relative actions; `normalize_actions` / `denormalize_actions` take that state).

Modes.
* event: sequence [vis, state, caption | future | a_1..a_T]. Outputs the whole event's
  actions (masked MSE on real steps), per-position stop logits read as a categorical
  distribution over the event length (cross-entropy on the true last step; the predicted
  length is the argmax), and the end-of-event visual embedding (cosine loss).
* unified: two passes of the same backbone. Pass 1, [vis, state, task | lang_query]: the
  language head maps the query's output to z, the predicted latent of the next-event
  description (cosine loss against the caption embedding). Pass 2,
  [vis, state, task | W_z z, future | a_1..a_H]: the H-action chunk and the end observation
  are decoded conditioned on z. z is not detached, so the action loss trains the language
  head too.
* chunk: the baseline, [vis, state, task | a_1..a_H], conditioned on the episode task only.

Block-causal attention (pi0-style). This is the block-causal mask over learned query tokens of
pi0 (Black et al. 2024), NOT Staircase Decoding: there is no relay depth and no staged latent
reasoning (earlier versions called it "staircase"). Tokens are grouped into blocks: block 0 = observation and
text/task tokens; block 1 = the query block (lang query in pass 1; latent token and future
query in pass 2; future query in event mode; absent in chunk mode); then the action
positions in consecutive blocks of `block_size` (positions [0, b) are the first action
block, [b, 2b) the next, ...). Token i may attend to token j iff block(j) <= block(i):
bidirectional inside a block, causal across blocks. The mask matrix is therefore square
blocks on and below the diagonal; e.g. 3 obs tokens, 1 latent token and
H = 4 with block_size = 2 gives block ids [0,0,0,1,2,2,3,3], and the first action block
sees the observation and the latent but not the later actions, the second sees all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from carve.trainer.config import ModelConfig


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes the parameter shapes (checked when resuming)."""

    mode: str
    state_dim: int
    action_dim: int
    visual_dim: int
    text_dim: int
    task_dim: int
    horizon: int  # action positions: max_len (event) or H (unified / chunk)


def block_causal_mask(block_ids: list[int], device: torch.device | None = None) -> Tensor:
    """Boolean [N, N] mask, True where token i may attend to token j (block(j) <= block(i))."""
    b = torch.tensor(block_ids, device=device)
    return b[None, :] <= b[:, None]


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.ln2 = nn.LayerNorm(d)
        hidden = int(d * mlp_ratio)
        self.fc1 = nn.Linear(d, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, d, bias=False)
        self.dropout = dropout

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, N, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        x = x + F.dropout(self.proj(att.transpose(1, 2).reshape(B, N, D)), p, self.training)
        return x + F.dropout(self.fc2(F.gelu(self.fc1(self.ln2(x)))), p, self.training)


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.ln_f = nn.LayerNorm(cfg.d_model)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for blk in self.blocks:
            x = blk(x, mask)
        return self.ln_f(x)


WORLD_SIDE = 8  # with the conv stem, the world head predicts the end frame at this size (3 x 8 x 8)


def image_side(visual_dim: int, cameras: int = 1) -> int:
    """S of a flattened vector of `cameras` (3, S, S) images; an error when `visual_dim` is not one."""
    per = visual_dim // cameras if cameras > 0 and visual_dim % cameras == 0 else 0
    side = round((per / 3) ** 0.5)
    if side < 8 or 3 * side * side != per:
        raise ValueError(f"a conv visual stem needs {cameras} (3, S, S) image vector(s) with S >= 8, "
                         f"got {visual_dim} values")
    return side


def random_shift(x: Tensor, pad: int) -> Tensor:
    """Each image of the (B, C, S, S) batch `x` moved by its own random whole-pixel offset in [-pad, pad]
    along x and y, the edge rows and columns replicated into the gap (DrQ's augmentation)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, S, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, S)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return padded[bi, ci, rows, cols]


def _conv_layers(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, channels, 3, padding=1))


class ConvStem(nn.Module):
    """The image token: a flattened (3, S, S) image in [-1, 1] through three convolutions (strides 2, 2, 1),
    then a spatial softmax that turns each of the last layer's channels into the expected (x, y) of its
    activation, a keypoint (Levine et al. 2016; robomimic's and Diffusion Policy's image encoders use it),
    and a linear map of the keypoints to `d_model`. Trained with the rest of the model, the same for
    every mode. With `cameras` > 1 the vector is that many images one after another, each through its
    own convolutions (`convs` for the first, `others` for the rest), and the token maps all their
    keypoints (robomimic's multi-camera encoder). With `shift` > 0 a training batch's images are shifted
    at random first (`random_shift`); in eval mode never."""

    def __init__(self, side: int, d: int, channels: int = 32, shift: int = 0, cameras: int = 1) -> None:
        super().__init__()
        self.side, self.shift, self.cameras = side, shift, cameras
        self.convs = _conv_layers(channels)
        self.others = nn.ModuleList(_conv_layers(channels) for _ in range(cameras - 1))
        h = (side + 3) // 4
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, h), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.reshape(-1), ys.reshape(-1)], 1), persistent=False)
        self.proj = nn.Linear(2 * channels * cameras, d)

    def forward(self, x: Tensor) -> Tensor:
        imgs = x.reshape(-1, self.cameras, 3, self.side, self.side)
        keypoints = []
        for i, convs in enumerate([self.convs, *self.others]):
            img = imgs[:, i]
            if self.training and self.shift:
                img = random_shift(img, self.shift)
            attn = torch.softmax(convs(img).flatten(2), -1)  # (B, C, H*W)
            keypoints.append((attn @ self.grid).flatten(1))  # (B, 2C)
        return self.proj(torch.cat(keypoints, 1))


class WorldActionModel(nn.Module):
    def __init__(self, cfg: ModelConfig, spec: ModelSpec) -> None:
        super().__init__()
        if spec.mode not in ("event", "unified", "chunk"):
            raise ValueError(f"unknown mode {spec.mode!r}")
        if cfg.relative_actions > min(spec.state_dim, spec.action_dim):
            raise ValueError(f"relative_actions {cfg.relative_actions}: the model has {spec.action_dim} action and "
                             f"{spec.state_dim} state values")
        self.cfg, self.spec = cfg, spec
        d = cfg.d_model
        self.backbone = Backbone(cfg)
        self.cameras = cfg.visual_cameras
        self.side = image_side(spec.visual_dim, self.cameras) if cfg.visual_stem == "conv" else 0
        self.vis_in: nn.Module = (ConvStem(self.side, d, shift=cfg.visual_shift, cameras=self.cameras) if self.side
                                  else nn.Linear(spec.visual_dim, d))
        world_dim = self.cameras * 3 * WORLD_SIDE * WORLD_SIDE if self.side else spec.visual_dim
        self.state_in = nn.Linear(spec.state_dim, d)
        cond_dim = spec.text_dim if spec.mode == "event" else spec.task_dim
        self.cond_in = nn.Linear(cond_dim, d)
        self.obs_type = nn.Parameter(torch.zeros(3, d))
        self.action_pos = nn.Parameter(torch.zeros(spec.horizon, d))
        self.action_head = nn.Linear(d, spec.action_dim)
        if spec.mode != "chunk":
            self.future_query = nn.Parameter(torch.zeros(1, d))
            self.world_head = nn.Linear(d, world_dim)
        if spec.mode == "event":
            self.stop_head = nn.Linear(d, 1)
        if spec.mode == "unified":
            self.lang_query = nn.Parameter(torch.zeros(1, d))
            self.lang_head = nn.Linear(d, spec.text_dim)
            self.latent_in = nn.Linear(spec.text_dim, d)
        for name, buf in (("state", spec.state_dim), ("action", spec.action_dim)):
            self.register_buffer(f"{name}_mean", torch.zeros(buf))
            self.register_buffer(f"{name}_std", torch.ones(buf))
        self.apply(self._init)
        for p in (self.obs_type, self.action_pos):
            nn.init.normal_(p, std=0.02)
        for name in ("future_query", "lang_query"):
            if hasattr(self, name):
                nn.init.normal_(getattr(self, name), std=0.02)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def set_norm_stats(self, state_mean: Any, state_std: Any, action_mean: Any, action_std: Any) -> None:
        with torch.no_grad():
            for name, v in (
                ("state_mean", state_mean),
                ("state_std", state_std),
                ("action_mean", action_mean),
                ("action_std", action_std),
            ):
                getattr(self, name).copy_(torch.as_tensor(v, dtype=torch.float32))

    def muon_parameters(self) -> list[nn.Parameter]:
        """2-D hidden weight matrices (attention and MLP inside the backbone)."""
        return [p for p in self.backbone.parameters() if p.ndim == 2]

    def adamw_parameters(self) -> list[nn.Parameter]:
        muon = {id(p) for p in self.muon_parameters()}
        return [p for p in self.parameters() if id(p) not in muon]

    # ------------------------------------------------------------------ forward
    def _obs_tokens(self, batch: dict[str, Tensor]) -> Tensor:
        state = (batch["state"] - self.state_mean) / self.state_std
        cond = batch["text"] if self.spec.mode == "event" else batch["task"]
        toks = torch.stack([self.vis_in(batch["visual"]), self.state_in(state), self.cond_in(cond)], 1)
        return toks + self.obs_type

    def _action_blocks(self) -> list[int]:
        return [i // self.cfg.block_size for i in range(self.spec.horizon)]

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Predictions (actions in normalised units)."""
        obs = self._obs_tokens(batch)
        B, dev = obs.shape[0], obs.device
        out: dict[str, Tensor] = {}
        queries: list[Tensor] = []
        if self.spec.mode == "unified":
            seq = torch.cat([obs, self.lang_query.expand(B, -1, -1)], 1)
            h = self.backbone(seq, block_causal_mask([0, 0, 0, 1], dev))
            z = self.lang_head(h[:, -1])
            out["latent"] = z
            queries.append(self.latent_in(z)[:, None])
        if self.spec.mode != "chunk":
            queries.append(self.future_query.expand(B, -1, -1))
        acts = self.action_pos.expand(B, -1, -1)
        nq = sum(q.shape[1] for q in queries)
        q_block = 1 if nq else 0
        blocks = [0, 0, 0] + [1] * nq + [q_block + 1 + b for b in self._action_blocks()]
        h = self.backbone(torch.cat([obs, *queries, acts], 1), block_causal_mask(blocks, dev))
        ha = h[:, 3 + nq :]
        out["actions"] = self.action_head(ha)
        if self.spec.mode != "chunk":
            out["end_visual"] = self.world_head(h[:, 3 + nq - 1])
        if self.spec.mode == "event":
            out["stop_logits"] = self.stop_head(ha).squeeze(-1)
        return out

    def world_target(self, end_visual: Tensor) -> Tensor:
        """What the world head predicts: the end observation's visual vector, or with the conv stem the end
        frame (each camera's) average-pooled to WORLD_SIDE x WORLD_SIDE."""
        if not self.side:
            return end_visual
        img = end_visual.reshape(-1, 3, self.side, self.side)
        return F.adaptive_avg_pool2d(img, WORLD_SIDE).reshape(end_visual.shape[0], -1)

    def action_anchor(self, state: Tensor) -> Tensor | None:
        """(B, 1, A): what each action position is predicted relative to: the state's first
        `relative_actions` values (raw units) for those dimensions, 0 for the absolute rest; None
        when every dimension is absolute (the default, which then does no anchor arithmetic)."""
        n = self.cfg.relative_actions
        if not n:
            return None
        return F.pad(state[:, :n], (0, self.spec.action_dim - n))[:, None]

    def normalize_actions(self, a: Tensor, state: Tensor) -> Tensor:
        """Actions (B, T, A) in dataset units -> the model's normalised targets, given the plan-start
        `state` (B, S) (the anchor of relative dimensions)."""
        anchor = self.action_anchor(state)
        return ((a if anchor is None else a - anchor) - self.action_mean) / self.action_std

    def denormalize_actions(self, x: Tensor, state: Tensor) -> Tensor:
        """The inverse of `normalize_actions`: predictions (B, T, A) -> dataset units."""
        anchor = self.action_anchor(state)
        a = x * self.action_std + self.action_mean
        return a if anchor is None else a + anchor

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its parts (detached) for a collated batch."""
        pred = self.forward(batch)
        cfg = self.cfg
        mask = batch["mask"].float()
        target = self.normalize_actions(batch["actions"], batch["state"])
        se = ((pred["actions"].float() - target) ** 2).mean(-1)
        action_loss = (se * mask).sum() / mask.sum().clamp_min(1.0)
        parts = {"action": action_loss}
        total = action_loss
        if "stop_logits" in pred:
            length_loss = F.cross_entropy(
                pred["stop_logits"].float(), (batch["length"].long() - 1).clamp_min(0)
            )
            parts["length"] = length_loss
            total = total + cfg.length_loss_weight * length_loss
        if "end_visual" in pred:
            world = (1 - F.cosine_similarity(pred["end_visual"].float(), self.world_target(batch["end_visual"]),
                                             dim=-1)).mean()
            parts["world"] = world
            total = total + cfg.world_loss_weight * world
        if "latent" in pred:
            lat = (1 - F.cosine_similarity(pred["latent"].float(), batch["text"], dim=-1)).mean()
            parts["latent"] = lat
            total = total + cfg.latent_loss_weight * lat
        return total, {k: v.detach() for k, v in parts.items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
