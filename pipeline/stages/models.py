"""Load the base model a run fine-tunes, offline by default."""

from __future__ import annotations

from importlib import metadata

from omegaconf import DictConfig

from pipeline.errors import PipelineError


def _package_path(package: str) -> str:
    """Directory of a model shipped inside a PyPI package (get_model_path())."""
    try:
        module = __import__(package)
    except ImportError as exc:
        raise PipelineError(
            f"model.id={package!r}: the model package is not installed; run 'make install'."
        ) from exc
    return str(module.get_model_path())


def load_model(cfg: DictConfig, device: str = "cpu"):
    """The base SentenceTransformer for model config `cfg` (kinds: package, static, hub)."""
    from sentence_transformers import SentenceTransformer

    if cfg.kind == "static":
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding

        # Token embeddings of the packaged MiniLM give the static model a sensible start.
        base = SentenceTransformer(_package_path(cfg.id), device="cpu")
        transformer = base[0]
        weights = transformer.auto_model.get_input_embeddings().weight.detach().clone()
        static = StaticEmbedding(transformer.tokenizer, embedding_weights=weights)
        static.tokenizer.enable_truncation(cfg.max_seq_length)
        return SentenceTransformer(modules=[static], device=device)
    path = _package_path(cfg.id) if cfg.kind == "package" else cfg.id  # preflight checked it
    model = SentenceTransformer(path, device=device)
    model.max_seq_length = cfg.max_seq_length
    return model


def model_fingerprint(cfg: DictConfig) -> str:
    """What identifies the base model's weights, for stage-cache keys."""
    if cfg.kind in ("package", "static"):
        return f"{cfg.kind}:{cfg.id}=={metadata.version(cfg.id.replace('_', '-'))}"
    return f"{cfg.kind}:{cfg.id}"
