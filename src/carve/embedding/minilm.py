"""all-MiniLM-L6-v2 in plain torch: the text encoder of `embed.text=minilm` without sentence-transformers.

Importing sentence-transformers pulls in transformers, scikit-learn, scipy.stats, accelerate and
torch's distributed and compiler packages: 4-5 s of CPU in every process that embeds a caption,
more than the run spends encoding (BENCHMARKS.md, issue 22). The model itself is a small BERT
(6 layers, 384 wide) followed by mean pooling and an L2 normalisation, which takes a few torch
functions to run. `LeanMiniLM.load(path)` reads the same offline weights (`model.safetensors`)
and tokenizer (`tokenizer.json`, through the `tokenizers` library) and `encode_one(text)` runs
the same operations in the same order as sentence-transformers' `encode([text],
normalize_embeddings=True)` (BertModel's embeddings, scaled-dot-product attention with no mask,
exact GELU, post-LayerNorm; mean pooling over the tokens; the model's Normalize, then encode's),
so each vector is bit for bit the one sentence-transformers gives for that text alone
(tests/test_embed_minilm.py checks it against SentenceTransformer).

`supports(path)` says whether a model directory is one this module can run (a BERT with
absolute positions and GELU, mean pooling, Normalize, no lower-casing by sentence-transformers,
safetensors weights); `embedders.MiniLMEmbedder` falls back to sentence-transformers otherwise.
Texts are never padded, and a text's vector never depends on its batch-mates: on one torch
thread (as the embed step runs, `embedding.stage.one_torch_thread`) `encode_many` runs the texts
of one token length together, at most `BATCH` at a time, and every row is bit for bit the vector
of that text alone (CPU torch then computes each row of a matrix product the same whatever the
number of rows; tests/test_embed_minilm.py checks it over groups of many lengths and sizes); a
batch costs about half the time of its texts one by one. On several threads, where a product's
rows are shared out by their count, it encodes them one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 64  # texts of one token length run together, at most this many at a time

# sentence-transformers' module types a directory must list, in this order, to be run here
_MODULES = ("sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
            "sentence_transformers.models.Normalize")


def _json(path: Path) -> dict[str, Any] | list[Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def supports(model_path: str | Path) -> bool:
    """Whether `model_path` is a sentence-transformers directory `LeanMiniLM` runs exactly (module doc)."""
    p = Path(model_path)
    modules = _json(p / "modules.json")
    config = _json(p / "config.json")
    pooling = _json(p / "1_Pooling" / "config.json")
    st_cfg = _json(p / "sentence_bert_config.json")
    if not (isinstance(modules, list) and isinstance(config, dict) and isinstance(pooling, dict)
            and isinstance(st_cfg, dict)):
        return False
    if tuple(m.get("type") for m in modules) != _MODULES or (modules[1].get("path") != "1_Pooling"):
        return False
    mean_only = pooling.get("pooling_mode_mean_tokens") is True and not any(
        v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_mean_tokens")
    return (mean_only and config.get("model_type") == "bert" and config.get("hidden_act") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and not st_cfg.get("do_lower_case", False)
            and (p / "model.safetensors").is_file() and (p / "tokenizer.json").is_file())


class LeanMiniLM:
    """The loaded weights and tokenizer; `encode_one(text)` -> a unit (dim,) float32 vector."""

    def __init__(self, weights: dict[str, Any], config: dict[str, Any], tokenizer: Any, max_seq_length: int):
        import torch

        self.torch = torch
        self.config = config
        self.hidden = int(config["hidden_size"])
        self.head_dim = self.hidden // int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        prefix = "" if "embeddings.word_embeddings.weight" in weights else "bert."
        self.w = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.dim = self.hidden

    @classmethod
    def load(cls, model_path: str | Path) -> LeanMiniLM:
        """Read the weights, config and tokenizer of a directory `supports` accepts."""
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        p = Path(model_path)
        config = json.loads((p / "config.json").read_text())
        st_cfg = json.loads((p / "sentence_bert_config.json").read_text())
        max_len = min(int(st_cfg.get("max_seq_length") or 512), int(config["max_position_embeddings"]))
        tok = Tokenizer.from_file(str(p / "tokenizer.json"))
        tok.no_padding()
        tok.enable_truncation(max_len)
        return cls(load_file(str(p / "model.safetensors")), config, tok, max_len)

    def _linear(self, x: Any, name: str) -> Any:
        return self.torch.nn.functional.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def _layer_norm(self, x: Any, name: str) -> Any:
        return self.torch.nn.functional.layer_norm(x, (self.hidden,), self.w[name + ".weight"],
                                                   self.w[name + ".bias"], self.eps)

    def encode_one(self, text: str) -> np.ndarray:
        """One text's unit vector, as sentence-transformers' `encode([text], normalize_embeddings=True)`."""
        return self.encode_many([text])[0]

    def encode_many(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors, row i the one `encode_one(texts[i])` gives: the
        texts of one token length run as one batch with no padding (module doc)."""
        ids = [self.tokenizer.encode(t.strip()).ids for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            by_length.setdefault(len(row), []).append(i)
        # on several torch threads a product's rows are shared out by their count, so a batch's
        # floats would differ from each text's alone: batch only on one thread (as the embed step runs)
        batch = BATCH if self.torch.get_num_threads() == 1 else 1
        for rows in by_length.values():
            for lo in range(0, len(rows), batch):
                chunk = rows[lo : lo + batch]
                out[chunk] = self._forward([ids[i] for i in chunk])
        return out

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        """The model on B token sequences of one length: (B, dim) unit vectors."""
        torch = self.torch
        f = torch.nn.functional
        with torch.inference_mode():
            input_ids = torch.tensor(ids, dtype=torch.long)
            b, n = input_ids.shape
            x = f.embedding(input_ids, self.w["embeddings.word_embeddings.weight"])
            x = x + f.embedding(torch.zeros_like(input_ids), self.w["embeddings.token_type_embeddings.weight"])
            x = x + f.embedding(torch.arange(n).unsqueeze(0), self.w["embeddings.position_embeddings.weight"])
            x = self._layer_norm(x, "embeddings.LayerNorm")
            heads = (b, n, -1, self.head_dim)
            for i in range(self.layers):
                p = f"encoder.layer.{i}."
                q = self._linear(x, p + "attention.self.query").view(*heads).transpose(1, 2)
                k = self._linear(x, p + "attention.self.key").view(*heads).transpose(1, 2)
                v = self._linear(x, p + "attention.self.value").view(*heads).transpose(1, 2)
                a = f.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0,
                                                   scale=self.head_dim ** -0.5, is_causal=False)
                a = a.reshape(b, -1, n, self.head_dim).transpose(1, 2).contiguous().reshape(b, n, -1).contiguous()
                x = self._layer_norm(self._linear(a, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
                h = f.gelu(self._linear(x, p + "intermediate.dense"))
                x = self._layer_norm(self._linear(h, p + "output.dense") + x, p + "output.LayerNorm")
            mask = torch.ones(b, n, dtype=torch.long).unsqueeze(-1).expand(x.size()).to(x.dtype)
            pooled = torch.sum(x * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
            out = f.normalize(f.normalize(pooled, p=2, dim=-1), p=2, dim=1)  # the Normalize module, then encode's
        return out.numpy().astype(np.float32, copy=False)
