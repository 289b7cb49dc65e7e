"""Versioned caption prompts: `load_prompt(version)` reads `captioners/prompts/<version>.yaml`.

A prompt file holds `system` and `user` templates (str.format placeholders `{task}`,
`{previous_caption}`, `{event_index}`, `{num_events}`, `{duration_s}`, `{num_images}`) and the
text used as the previous caption of an episode's first event. The version ends up in each
event's `caption_model`, so captions made with different prompts can be told apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from carve.core.errors import CarveError

_VERSION_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Prompt:
    """One prompt version: fills the system and user messages for an event.

    The previous caption shown for the first event of an episode is `first_event_previous`;
    for a later event whose predecessor has no caption (failed) it is `unknown_previous`.
    """

    version: str
    system: str
    user: str
    first_event_previous: str = "(none, this is the first event)"
    unknown_previous: str = "(not available)"

    def user_text(
        self, *, task: str, previous_caption: str, event_index: int, num_events: int, duration_s: float,
        num_images: int,
    ) -> str:
        if event_index == 0:
            prev = self.first_event_previous
        else:
            prev = previous_caption.strip() or self.unknown_previous
        return self.user.format(
            task=task.strip() or "(no task given)",
            previous_caption=prev,
            event_index=event_index + 1,
            num_events=max(num_events, event_index + 1),
            duration_s=duration_s,
            num_images=num_images,
        )


def available_versions() -> list[str]:
    root = resources.files("carve.captioners") / "prompts"
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


@lru_cache(maxsize=16)
def load_prompt(version: str = "v1") -> Prompt:
    """The prompt `version` (e.g. "v1"); CarveError naming the file when missing or malformed."""
    if not _VERSION_RE.match(version):
        raise CarveError(f"caption prompt version {version!r} is not a valid name")
    path = resources.files("carve.captioners") / "prompts" / f"{version}.yaml"
    if not path.is_file():
        raise CarveError(
            f"caption prompt version {version!r} not found ({path}); available: {', '.join(available_versions())}"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise CarveError(f"caption prompt file {path} is not valid YAML: {e}") from e
    missing = [k for k in ("system", "user") if not isinstance(data.get(k), str) or not data.get(k).strip()]
    if missing:
        raise CarveError(f"caption prompt file {path} lacks {', '.join(missing)}")
    kwargs = {k: data[k] for k in ("first_event_previous", "unknown_previous") if isinstance(data.get(k), str)}
    return Prompt(version=str(data.get("version") or version), system=data["system"].strip(),
                  user=data["user"].strip(), **kwargs)
