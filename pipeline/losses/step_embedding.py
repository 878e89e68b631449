"""Embed one training step's texts: each distinct text once, in chunks of similar length.

sentence-transformers' losses embed a step with `embed_columns`: the anchor column in one
forward, every candidate column merged into another, each padded to its longest text, and
every text as often as it appears. With short queries, long passages and hard negatives
that are other rows' positives, much of that work is padding and repeats. `StepEmbedder`
embeds the same step with less of it:

- dedupe: texts whose features are identical (token ids after tokenization and truncation,
  so their embeddings are too) are embedded once; every use indexes that one embedding, so
  the gradients of all uses accumulate into it, as they do into the repeated forwards.
- length_aware: texts are sorted by token count and cut into chunks whose rows x width stays
  within `token_budget`, each chunk padded only to its own longest text.
- frozen columns (the negatives, for negatives="frozen"): embedded under torch.no_grad; with
  dedupe, a frozen text that is also a live anchor or positive reuses that live embedding,
  detached, instead of a second forward.

With dropout off, a transformer gives the same embeddings either way up to float rounding
(padding is masked out of attention and pooling); with dropout on, the draws differ, as they
do between any two forwards. StaticEmbedding's flat token stream pads nothing, so
length_aware changes nothing there; dedupe works the same.

Every step records what it fed the model (`StepCounts`), counted at the model's forward:
measured, not predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.merged_forward import embed_columns
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from pipeline.losses.chunk_budget import AutoBudget


@dataclass
class StepCounts:
    """What the model was fed in one step, counted at its forward. padded = rows x width of each
    forward (StaticEmbedding pads nothing: padded = real); tokens_padded_with_grad is the part of
    it embedded with gradients (a backward pass follows)."""

    texts_with_grad: int = 0
    texts_without_grad: int = 0
    tokens_real: int = 0
    tokens_padded: int = 0
    tokens_padded_with_grad: int = 0
    forwards: int = 0

    def add_forward(self, features: dict[str, Any]) -> None:
        mask = features.get("attention_mask")
        if isinstance(mask, Tensor) and mask.ndim == 2:
            rows, real, padded = mask.shape[0], int(mask.sum()), mask.numel()
        else:  # a flat token stream with offsets (StaticEmbedding)
            rows, real = len(features["offsets"]), features["input_ids"].numel()
            padded = real
        if torch.is_grad_enabled():
            self.texts_with_grad += rows
            self.tokens_padded_with_grad += padded
        else:
            self.texts_without_grad += rows
        self.tokens_real += real
        self.tokens_padded += padded
        self.forwards += 1

    def __iadd__(self, other: StepCounts) -> StepCounts:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)
        return self


class RunningCounts:
    """StepCounts summed over training steps (loss calls with gradients enabled; evaluation
    calls under no_grad are left out), for a trainer callback or the caller to log."""

    def __init__(self) -> None:
        self.steps = 0
        self.total = StepCounts()
        self.last = StepCounts()

    def record(self, counts: StepCounts) -> None:
        self.last = counts
        if torch.is_grad_enabled():
            self.steps += 1
            self.total += counts

    def means(self) -> dict[str, float]:
        """Per-step means of every count (0 before the first step)."""
        return {name: value / max(self.steps, 1) for name, value in asdict(self.total).items()}


@contextmanager
def counting_forwards(model: nn.Module, counts: StepCounts):
    """Count every forward of `model` inside the block into `counts`."""
    handle = model.register_forward_pre_hook(lambda module, args: counts.add_forward(args[0]))
    try:
        yield
    finally:
        handle.remove()


@dataclass
class _TokenRows:
    """The texts of several columns, row after row, as (N, width) token tensors padded on the right.

    `flat` marks StaticEmbedding's layout (one token stream and offsets, no attention mask);
    `meta` holds the non-tensor features every column shares (e.g. modality)."""

    tokens: dict[str, Tensor]
    lengths: Tensor
    meta: dict[str, Any]
    flat: bool

    @classmethod
    def of(cls, columns: list[dict[str, Any]]) -> _TokenRows:
        meta = {key: value for key, value in columns[0].items() if not isinstance(value, Tensor)}
        if any({k: v for k, v in c.items() if not isinstance(v, Tensor)} != meta for c in columns):
            raise ValueError(f"The columns disagree on their non-tensor features {sorted(meta)}")
        keys = {key for key, value in columns[0].items() if isinstance(value, Tensor)}
        if any({key for key, value in c.items() if isinstance(value, Tensor)} != keys for c in columns):
            raise ValueError("The columns preprocess to different sets of features")
        if keys == {"input_ids", "offsets"} and columns[0]["input_ids"].ndim == 1:
            return cls._of_flat(columns, meta)
        if "attention_mask" not in keys or columns[0]["attention_mask"].ndim != 2:
            raise ValueError(f"Features {sorted(keys)} are neither padded rows with an attention_mask "
                             "nor a flat token stream with offsets")
        return cls._of_padded(columns, keys, meta)

    @classmethod
    def _of_flat(cls, columns: list[dict[str, Any]], meta: dict[str, Any]) -> _TokenRows:
        rows = []
        for column in columns:
            ids, offsets = column["input_ids"], column["offsets"]
            lengths = torch.diff(offsets, append=offsets.new_tensor([ids.numel()]))
            rows.extend(ids.split(lengths.tolist()))
        lengths = torch.tensor([len(row) for row in rows], device=columns[0]["input_ids"].device)
        return cls({"input_ids": pad_sequence(rows, batch_first=True)}, lengths, meta, flat=True)

    @classmethod
    def _of_padded(cls, columns: list[dict[str, Any]], keys: set[str], meta: dict[str, Any]) -> _TokenRows:
        width = max(column["attention_mask"].shape[1] for column in columns)
        for key in keys:
            if any(c[key].shape != c["attention_mask"].shape or c[key].is_floating_point() for c in columns):
                raise ValueError(f"Feature {key!r} is not an integer tensor with one value per token")
        # Positions past a row's length are masked out of attention and pooling: their value is never read.
        tokens = {key: torch.cat([F.pad(c[key], (0, width - c[key].shape[1])) for c in columns])
                  for key in columns[0] if key in keys}
        mask = tokens["attention_mask"].bool()
        lengths = mask.sum(1)
        if not torch.equal(mask, torch.arange(width, device=mask.device) < lengths[:, None]):
            raise ValueError("Expected right-padded features (each attention_mask row ones, then zeros); "
                             "a left-padding tokenizer is not supported")
        return cls(tokens, lengths, meta, flat=False)

    def __len__(self) -> int:
        return len(self.lengths)

    def identity(self) -> Tensor:
        """(N, *) integers equal for two rows exactly when their features are: the dedupe key."""
        width = self.tokens["input_ids"].shape[1]
        padding = torch.arange(width, device=self.lengths.device) >= self.lengths[:, None]
        return torch.cat([values.long().masked_fill(padding, -1)
                          for key, values in self.tokens.items() if key != "attention_mask"], dim=1)

    def features(self, index: Tensor) -> dict[str, Any]:
        """Model features of rows `index`, trimmed to their longest row."""
        lengths = self.lengths[index]
        if self.flat:
            ids = self.tokens["input_ids"][index]
            real = torch.arange(ids.shape[1], device=ids.device) < lengths[:, None]
            return {"input_ids": ids[real], "offsets": F.pad(lengths.cumsum(0)[:-1], (1, 0)), **self.meta}
        width = int(lengths.max())
        return {key: values[index, :width] for key, values in self.tokens.items()} | self.meta


def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch's features from each of its texts' own (model.preprocess of one text each): what
    model.preprocess of the whole batch returns, padded to its longest text. Lets a caller that
    sees the same texts in many batches tokenize each once (pipeline.stages.cost)."""
    rows = _TokenRows.of(features)
    return rows.features(torch.arange(len(rows), device=rows.lengths.device))


def length_chunks(lengths: Tensor, token_budget: int | None) -> list[Tensor]:
    """Indices into `lengths`, shortest first, cut so that each chunk's rows x longest length stays
    within `token_budget` (a row longer than the budget is a chunk of its own; None: one chunk)."""
    order = torch.argsort(lengths, stable=True)
    chunks, start = [], 0
    for end, length in enumerate(lengths[order].tolist()):
        if token_budget is not None and end > start and (end - start + 1) * length > token_budget:
            chunks.append(order[start:end])
            start = end
    return chunks + [order[start:]] if len(order) else []


class StepEmbedder:
    """Embeds a step's feature columns (see the module docstring): live columns with gradients,
    frozen columns without; `embed` returns one embedding tensor per column, live then frozen.

    With length_aware and dedupe off and no frozen columns it is sentence-transformers' own
    `embed_columns`. `counts` holds what each step fed the model.

    Args:
        length_aware: embed in chunks of similar token count, each padded to its own longest row.
        dedupe: embed each distinct text of the step once.
        token_budget: the most rows x padded width one length-aware chunk may hold; None: one
            forward; an AutoBudget: chosen on the first training steps (chunk_budget.py).
    """

    def __init__(self, length_aware: bool = False, dedupe: bool = False,
                 token_budget: int | None | AutoBudget = 4096) -> None:
        if isinstance(token_budget, int) and token_budget < 1:
            raise ValueError(f"token_budget must be at least 1, got {token_budget}")
        self.length_aware = length_aware
        self.dedupe = dedupe
        self.auto = token_budget if isinstance(token_budget, AutoBudget) else None
        self.token_budget = token_budget.chunked if isinstance(token_budget, AutoBudget) else token_budget
        self.counts = RunningCounts()

    def _choose_budget(self, model: nn.Module, live: list[dict[str, Any]], frozen: list[dict[str, Any]]) -> None:
        """With an AutoBudget, while it decides: this training step's budget (timing both on its texts)."""
        auto = self.auto
        if auto is None or not auto.deciding or not self.length_aware or not torch.is_grad_enabled():
            return
        device = next(model.parameters()).device
        if auto.trials == 0 and not auto.how:
            self.token_budget = auto.start(device, _TokenRows.of([*live, *frozen]).flat)
            if not auto.deciding:
                return

        def embed(budget: int | None) -> None:
            self.token_budget = budget
            self._embed_rows(model, live, frozen)

        self.token_budget = auto.trial(model, device, embed)

    def embed(self, model: nn.Module, live: Sequence[dict[str, Any]],
              frozen: Sequence[dict[str, Any]] = ()) -> list[Tensor]:
        self._choose_budget(model, list(live), list(frozen))
        counts = StepCounts()
        with counting_forwards(model, counts):
            if not (self.length_aware or self.dedupe or frozen):
                embeddings = embed_columns(model, live)
            else:
                embeddings = self._embed_rows(model, list(live), list(frozen))
        self.counts.record(counts)
        return embeddings

    def _embed_rows(self, model: nn.Module, live: list[dict[str, Any]], frozen: list[dict[str, Any]]) -> list[Tensor]:
        """Forward each distinct text once (each row, without dedupe), with gradients if a live column
        uses it, then give every row its text's embedding by index, so that the gradients of all its
        uses accumulate into that one forward."""
        columns = [*live, *frozen]
        rows = _TokenRows.of(columns)
        device = rows.lengths.device
        sizes = [len(features["offsets"] if rows.flat else features["attention_mask"]) for features in columns]
        column = torch.repeat_interleave(torch.arange(len(columns), device=device), torch.tensor(sizes, device=device))
        every_row = torch.arange(len(rows), device=device)
        if self.dedupe:
            _, text_of_row = torch.unique(rows.identity(), dim=0, return_inverse=True)
        else:
            text_of_row = every_row
        n_texts = int(text_of_row.max()) + 1
        first_row = torch.full((n_texts,), len(rows), device=device).scatter_reduce(0, text_of_row, every_row, "amin")
        needs_grad = torch.zeros(n_texts, dtype=torch.long, device=device).scatter_reduce(
            0, text_of_row, (column < len(live)).long(), "amax").bool()

        order, parts = [], []
        for grad in (True, False):
            texts = needs_grad.eq(grad).nonzero().squeeze(1)
            for chunk in self._chunks(rows, texts, first_row, column):
                with nullcontext() if grad else torch.no_grad():
                    parts.append(model(rows.features(first_row[chunk]))["sentence_embedding"])
                order.append(chunk)
        slot = torch.empty(n_texts, dtype=torch.long, device=device)
        slot[torch.cat(order)] = torch.arange(n_texts, device=device)
        per_column = torch.cat(parts)[slot[text_of_row]].split(sizes)
        return [*per_column[:len(live)], *(embeddings.detach() for embeddings in per_column[len(live):])]

    def _chunks(self, rows: _TokenRows, texts: Tensor, first_row: Tensor, column: Tensor) -> list[Tensor]:
        """How `texts` are grouped into forwards: one for a flat stream (nothing to pad), chunks of
        similar length when length_aware, else as embed_columns groups them (anchors, candidates)."""
        if not len(texts):
            return []
        if rows.flat:
            return [texts]
        if self.length_aware:
            return [texts[chunk] for chunk in length_chunks(rows.lengths[first_row[texts]], self.token_budget)]
        is_anchor = column[first_row[texts]] == 0
        return [group for group in (texts[is_anchor], texts[~is_anchor]) if len(group)]
