"""Versioned caption prompts: `load_prompt(version)` reads `captioners/prompts/<version>.yaml`.

A prompt file holds `system` and `user` templates (str.format placeholders `{task}`,
`{instruction}` (the task text parsed by `captioners.task_text`: verb, its class, object, target,
result; `instruction_text`), `{verb_classes}` (the classes of `captioners.verb_classes`),
`{previous_caption}`, `{event_index}`, `{num_events}`, `{duration_s}`, `{num_images}`,
`{num_cameras}`, `{camera_names}`, `{robot_arms}`) and the text used as the previous caption of
an episode's first event. Optionally (v2 on) a `response_schema` (`name`, `schema`, `strict`:
the `json_schema` of an OpenAI `response_format`, which vLLM and SGLang honour by guided
decoding) and `max_tokens`, the least room its reply needs. The version ends up in each
event's `caption_model`, so captions made with different prompts can be told apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from carve.captioners.task_text import TaskPhrases, parse_task
from carve.captioners.verb_classes import CLASSES
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
    response_schema: dict[str, Any] | None = None  # {"name", "schema", "strict"}: structured output
    max_tokens: int = 0  # the least `max_tokens` a reply to this prompt needs (0: no floor)

    @property
    def response_format(self) -> dict[str, Any] | None:
        """The OpenAI `response_format` asking for this prompt's JSON schema, or None (plain text)."""
        if not self.response_schema:
            return None
        spec = {"name": self.response_schema.get("name") or "caption", "schema": self.response_schema["schema"]}
        if "strict" in self.response_schema:
            spec["strict"] = bool(self.response_schema["strict"])
        return {"type": "json_schema", "json_schema": spec}

    def user_text(
        self, *, task: str, previous_caption: str, event_index: int, num_events: int, duration_s: float,
        num_images: int, camera_names: list[str] | None = None, robot_arms: list[str] | None = None,
    ) -> str:
        if event_index == 0:
            prev = self.first_event_previous
        else:
            prev = previous_caption.strip() or self.unknown_previous
        return self.user.format(
            task=task.strip() or "(no task given)",
            instruction=instruction_text(parse_task(task)) if task.strip() else "(no task given)",
            verb_classes=classes_text(),
            previous_caption=prev,
            event_index=event_index + 1,
            num_events=max(num_events, event_index + 1),
            duration_s=duration_s,
            num_images=num_images,
            num_cameras=max(1, len(camera_names or [])),
            camera_names=", ".join(camera_names or []) or "one camera",
            robot_arms=_arms_text(robot_arms or []),
        )


def instruction_text(p: TaskPhrases) -> str:
    """The parsed instruction as the prompt shows it: "verb open (class pull); object the drawer; result open";
    a tool the hand works with is named ("verb push (class push); object the thermos; ...; tool the stick")."""
    parts = []
    if p.verb:
        parts.append(f"verb {p.verb.replace('_', ' ')}" + (f" (class {p.action})" if p.action else " (no class)"))
    objs = [o for o in p.objects if o != "the object"]
    if objs:
        parts.append(f"object {' then '.join(objs)}")
    if p.target:
        parts.append(f"target {p.target}")
    if p.result:
        parts.append(f"result {p.result}")
    if p.manner:
        parts.append(f"manner {p.manner}")
    if p.tool:
        parts.append(f"tool {p.tool}")
    return "; ".join(parts) or "(no verb or object recognised)"


def classes_text() -> str:
    """The verb classes for the prompt: "reach (reach, approach, ...); grasp (...); ..."."""
    return "; ".join(f"{c} ({', '.join(v.replace('_', ' ') for v in verbs[:6])})" for c, verbs in CLASSES.items())


def _arms_text(arms: list[str]) -> str:
    """"one arm" / "two arms: left, right" for the prompt."""
    if len(arms) <= 1:
        return "one arm"
    words = {2: "two", 3: "three", 4: "four"}
    return f"{words.get(len(arms), len(arms))} arms: {', '.join(arms)}"


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
    kwargs: dict[str, Any] = {
        k: data[k] for k in ("first_event_previous", "unknown_previous") if isinstance(data.get(k), str)
    }
    schema = data.get("response_schema")
    if schema is not None:
        if not isinstance(schema, dict) or not isinstance(schema.get("schema"), dict):
            raise CarveError(f"caption prompt file {path}: response_schema needs a `schema` mapping (a JSON schema)")
        kwargs["response_schema"] = schema
    if data.get("max_tokens") is not None:
        if not isinstance(data["max_tokens"], int) or data["max_tokens"] < 0:
            raise CarveError(f"caption prompt file {path}: max_tokens must be a whole number >= 0")
        kwargs["max_tokens"] = data["max_tokens"]
    return Prompt(version=str(data.get("version") or version), system=data["system"].strip(),
                  user=data["user"].strip(), **kwargs)
