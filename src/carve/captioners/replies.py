"""From a VLM's reply to a caption: plain-text cleaning and structured (JSON schema) replies.

Owns `clean_caption(text)` (one short phrase from a chatty reply), `CaptionReply` (the
pydantic model of the structured reply the v2 prompt asks for: verb, object, target, arm,
caption) and `parse_reply(text, arms)`, which every VLM backend uses:

* a JSON object (also inside a ```json fence or after a short preamble) is validated as a
  `CaptionReply`; its `caption` becomes the caption (composed from verb, object and target
  when it is empty), and in a multi-arm episode the arm it names is appended, " with the left
  arm" (the convention of the kinematic captioner). Status "ok";
* a plain-text reply (a server that ignores `response_format`) is cleaned to one phrase,
  status still "ok";
* a reply that looks like JSON but does not parse (truncated, trailing commas): the fields
  that can still be read are used; failing that, the text when it reads as a phrase; else
  the event is marked "failed: invalid JSON reply ...". A JSON reply that does not match the
  schema (a field of the wrong type, not an object) is used if its `caption` is a string, else
  marked "failed: ... does not match the schema ...";
* no usable words at all: "empty".

The reply's verb is checked against the verb classes (`captioners.verb_classes`, offered to the
model by prompt v3 with the parsed instruction): `checked_class(reply, caption)` is the class of
the reply's `verb` (else of the caption's leading verb). A verb of a class is recorded with it in
the result's `verb_class`; a verb of no class is kept, open vocabulary being allowed, and recorded
as `OPEN_VOCABULARY`. The class the model declares (`verb_class`) is not trusted over its verb:
where the two disagree, the verb's own class is recorded.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from carve.captioners.base import OPEN_VOCABULARY, STATUS_EMPTY, CaptionResult
from carve.captioners.verb_classes import CLASS_OF, lead_verb

MAX_CAPTION_WORDS = 24
_PREFIX_RE = re.compile(r"^\s*(?:caption|answer|description|action|event(?:\s*\d+)?)\s*[:\-–]\s*", re.I)
_FIELDS = ("verb", "verb_class", "object", "target", "arm", "caption")
_ARM_IN_TEXT = re.compile(r"\b(?:left|right|both)\s+(?:arm|hand|gripper)s?\b", re.I)


def clean_caption(text: str | None) -> str:
    """One short caption phrase from a model reply ("" when the reply has no words)."""
    if not text:
        return ""
    # drop reasoning blocks some models emit, markdown and list markers
    t = re.sub(r"<think>.*?</think>", " ", str(text), flags=re.S | re.I)
    lines = [ln.strip() for ln in t.splitlines() if re.search(r"[A-Za-z]", ln)]
    if not lines:
        return ""
    t = lines[0]
    t = re.sub(r"^[\s>*#`\-•\d.)]+", "", t)
    t = _PREFIX_RE.sub("", t)
    t = t.replace("**", "").replace("`", "")
    t = t.strip().strip("\"'“”‘’ ").strip()
    t = re.sub(r"\s+", " ", t)
    t = re.split(r"(?<=[a-z0-9])[.!?;](?:\s|$)", t, maxsplit=1)[0]  # first sentence
    t = t.rstrip(" .!?;:,")
    words = t.split()
    if len(words) > MAX_CAPTION_WORDS:
        t = " ".join(words[:MAX_CAPTION_WORDS])
    if not re.search(r"[A-Za-z]{2,}", t):
        return ""
    return t[:1].lower() + t[1:] if t[:2].isalpha() and not t[:2].isupper() else t


class CaptionReply(BaseModel):
    """The structured reply of prompt v2 (fields may be empty; unknown fields are ignored)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    verb: str = ""
    verb_class: str = ""
    object: str = ""
    target: str = ""
    arm: str = ""
    caption: str = ""

    @field_validator("*", mode="before")
    @classmethod
    def _none_is_empty(cls, v: Any) -> Any:
        return "" if v is None else v


def _strip_wrappers(text: str) -> str:
    t = re.sub(r"<think>.*?</think>", " ", text, flags=re.S | re.I).strip()
    fence = re.search(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", t, flags=re.S)
    return fence.group(1).strip() if fence else t


def _json_part(text: str) -> str | None:
    """The JSON object of a reply (from its first "{"), or None when the reply is plain text."""
    t = _strip_wrappers(text)
    if t.startswith(("{", "[")):
        return t
    i = t.find("{")
    # "Here is the JSON: {...}": a short preamble, then an object with a quoted key
    if 0 <= i <= 80 and re.search(r'\{\s*"\w+"\s*:', t[i:]):
        return t[i:]
    return None


def _salvage(fragment: str) -> dict[str, str]:
    """The string fields that can still be read from broken JSON ("key": "value" pairs)."""
    out = {}
    for key in _FIELDS:
        m = re.search(rf'"{key}"\s*:\s*"((?:[^"\\]|\\.)*)"', fragment)
        if m:
            try:
                out[key] = json.loads(f'"{m.group(1)}"')
            except json.JSONDecodeError:
                out[key] = m.group(1)
    return out


def normalise_arm(arm: str, arms: list[str]) -> str:
    """The arm a reply names, as one of `arms` (or "both"); "" when it names none of them."""
    words = [w for w in re.findall(r"[a-z0-9_]+", (arm or "").lower()) if w not in ("arm", "hand", "gripper", "the")]
    name = "_".join(words)
    if name in ("both", "two", "all", "both_arms"):
        return "both"
    return name if name in arms else ""


def compose_caption(reply: CaptionReply, arms: list[str]) -> str:
    """The caption of a structured reply: its `caption` (else verb + object + target), plus the arm."""
    caption = clean_caption(reply.caption)
    if not caption:
        verb = " ".join(re.findall(r"[A-Za-z-]+", reply.verb.lower())[:2])
        parts = [verb, reply.object] if verb else []
        if parts and reply.target:
            parts += ["to", reply.target]
        caption = clean_caption(" ".join(p for p in parts if p))
    if not caption:
        return ""
    arm = normalise_arm(reply.arm, arms) if len(arms) > 1 else ""
    if arm and not _ARM_IN_TEXT.search(caption):
        caption += " with both arms" if arm == "both" else f" with the {arm.replace('_', ' ')} arm"
    return caption


def checked_class(reply: CaptionReply, caption: str) -> tuple[str, str]:
    """(the verb, its class) of a structured reply: the class of its `verb` field, read in the caption's
    context where the caption starts with it ("open" in "open the gripper": release), else of the caption's
    leading verb, among `verb_classes.CLASSES`, `OPEN_VOCABULARY` for a verb of none, ("", "") without one."""
    field, _ = lead_verb(reply.verb) if reply.verb.strip() else (None, 0)
    said, _ = lead_verb(caption)
    # the caption gives the verb its context ("open" + "the gripper": the gripper's own action)
    verb = said if said and (field is None or said.split("_")[0] == field.split("_")[0]) else field
    if verb is None:
        return "", ""
    return verb.replace("_", " "), CLASS_OF.get(verb, OPEN_VOCABULARY)


def _from_fields(data: dict[str, Any], arms: list[str]) -> CaptionResult:
    reply = CaptionReply.model_validate(data)
    caption = compose_caption(reply, arms)
    if not caption:
        return CaptionResult(caption="", status=STATUS_EMPTY)
    verb, cls = checked_class(reply, caption)
    return CaptionResult(caption=caption, verb=verb, verb_class=cls)


def parse_reply(text: str | None, arms: list[str] | None = None) -> CaptionResult:
    """The caption of one VLM reply, structured or plain (see the module docstring)."""
    arms = list(arms or [])
    if not text or not str(text).strip():
        return CaptionResult(caption="", status=STATUS_EMPTY)
    text = str(text)
    part = _json_part(text)
    if part is None:  # plain text: a server that ignored the schema
        caption = clean_caption(text)
        return CaptionResult(caption=caption) if caption else CaptionResult(caption="", status=STATUS_EMPTY)
    try:
        data = json.loads(part)
    except json.JSONDecodeError as e:
        try:  # a complete object followed by chatter
            data, _ = json.JSONDecoder().raw_decode(part)
        except json.JSONDecodeError:
            fields = _salvage(part)
            if fields.get("caption") or fields.get("verb"):
                return _from_fields(fields, arms)
            phrase = clean_caption(re.sub(r"[{}\[\]\"]", " ", part)) if '":' not in part else ""
            if phrase and len(phrase.split()) >= 2:
                return CaptionResult(caption=phrase)
            return CaptionResult.failure(f"invalid JSON reply from the caption server ({e.msg} at character "
                                         f"{e.pos}): {text.strip()[:120]!r}")
    if isinstance(data, str):
        caption = clean_caption(data)
        return CaptionResult(caption=caption) if caption else CaptionResult(caption="", status=STATUS_EMPTY)
    if not isinstance(data, dict):
        return CaptionResult.failure(f"the structured reply is a JSON {type(data).__name__}, not an object, and does "
                                     f"not match the schema: {text.strip()[:120]!r}")
    try:
        return _from_fields(data, arms)
    except ValidationError as e:
        if isinstance(data.get("caption"), str) and clean_caption(data["caption"]):
            return CaptionResult(caption=clean_caption(data["caption"]))
        problems = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors()[:3])
        return CaptionResult.failure(f"the structured reply does not match the schema ({problems}): "
                                     f"{text.strip()[:120]!r}")
