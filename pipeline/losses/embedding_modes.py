"""Wrap any loss with `compute_loss_from_embeddings` so a step pays less for its hard negatives.

The wrapper decides how a step's texts are embedded (pipeline/losses/step_embedding.py) and where
the negatives' vectors come from; the wrapped loss scores them exactly as it would on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from sentence_transformers.sentence_transformer.losses import TripletLoss
from torch import Tensor, nn

from pipeline.config.losses import NEGATIVES_MODES
from pipeline.losses.chunk_budget import AutoBudget
from pipeline.losses.memory_bank import CorpusMemoryBank
from pipeline.losses.online_mining import OnlineMiner
from pipeline.losses.step_embedding import StepCounts, StepEmbedder


def step_metrics(losses: list[StepEmbeddingLoss]) -> dict[str, float]:
    """StepEmbeddingLoss.metrics over several losses (a run of several sources trains one per
    source's bank): their steps pooled, their banks' refreshes (taken at the same steps) and
    refresh seconds."""
    total, steps = StepCounts(), 0
    for loss in losses:
        total += loss.counts.total
        steps += loss.counts.steps
    metrics: dict[str, float] = {f"step/{name}": value / max(steps, 1) for name, value in asdict(total).items()}
    metrics["step/steps"] = steps
    banks = [loss.bank for loss in losses if loss.bank is not None]
    if banks:
        metrics["bank/refreshes"] = max(bank.refreshes for bank in banks)
        metrics["bank/refresh_s"] = sum(bank.refresh_seconds for bank in banks)
    return metrics


class StepEmbeddingLoss(nn.Module):
    def __init__(
        self,
        loss: nn.Module,
        negatives: str = "live",
        length_aware: bool = False,
        dedupe: bool = False,
        token_budget: int | None | AutoBudget = 4096,
        bank: CorpusMemoryBank | None = None,
        miner: OnlineMiner | None = None,
    ) -> None:
        """
        `loss` on embeddings made by a :class:`StepEmbedder`, with the hard negatives' embeddings from
        one of three places:

        - ``live``: embedded with gradients, like every other text (the plain loss's behaviour).
        - ``frozen``: embedded in the same step under ``torch.no_grad``, forward only; with ``dedupe``,
          a negative that is also a live anchor or positive of the step reuses that embedding,
          detached. The loss value equals ``live``'s; no gradient flows through negatives.
        - ``bank``: looked up in a :class:`CorpusMemoryBank` by corpus id: the step embeds only anchors
          and positives, so its cost does not grow with k. Vectors are as fresh as the last refresh
          (:class:`BankRefresh`). With a ``miner`` (:class:`OnlineMiner`) the ids themselves are
          re-mined every step from the whole bank against the step's anchors.

        With ``live`` and ``length_aware`` and ``dedupe`` off, this is exactly ``loss`` (its embeddings
        come from sentence-transformers' ``embed_columns``), so a pipeline can always wrap.

        Args:
            loss: a loss with ``compute_loss_from_embeddings(embeddings, labels)``, wrapping the model.
            negatives: ``live``, ``frozen`` or ``bank``.
            length_aware: embed in chunks of similar token count, each padded to its own longest text.
            dedupe: embed each distinct text of a step once.
            token_budget: the most rows x padded width of one length-aware chunk (None: one forward;
                an AutoBudget: the faster of the two, timed on the first training steps).
            bank: the corpus memory bank, for ``negatives="bank"`` only.
            miner: re-mines each row's negatives from the bank every step (bank only).

        Inputs:
            +----------------------------------------------+--------------------------------------+
            | Texts                                        | Labels                               |
            +==============================================+======================================+
            | (anchor, positive, negative_1..k): live,     | whatever ``loss`` takes              |
            | frozen                                       |                                      |
            +----------------------------------------------+--------------------------------------+
            | (anchor, positive): bank                     | (B, k) corpus ids of the negatives,  |
            |                                              | a dataset column named ``label``;    |
            |                                              | with a miner, (B, k + P): then every |
            |                                              | positive of the anchor (-1 pads)     |
            +----------------------------------------------+--------------------------------------+
            | (anchor, positive): any mode (dev loss)      | none                                 |
            +----------------------------------------------+--------------------------------------+

        Each training step's counts (texts with and without gradients, real and padded tokens) are in
        ``counts`` and, with the bank's refreshes, in :meth:`metrics`.
        """
        super().__init__()
        if negatives not in NEGATIVES_MODES:
            raise ValueError(f"negatives={negatives!r}: expected one of {', '.join(NEGATIVES_MODES)}")
        if (negatives == "bank") != (bank is not None):
            raise ValueError("A memory bank is needed for negatives='bank', and only used there")
        if miner is not None and bank is None:
            raise ValueError("An online miner re-mines from a memory bank: it needs negatives='bank'")
        if bank is not None and isinstance(loss, TripletLoss):
            raise ValueError("negatives='bank' needs a cosine loss: the triplet distance depends on the "
                             "norm of the bank's vectors, which may be normalized where the model's are not")
        self.loss = loss
        self.negatives = negatives
        self.embedder = StepEmbedder(length_aware=length_aware, dedupe=dedupe, token_budget=token_budget)
        self.bank = bank
        self.miner = miner

    @property
    def model(self):
        return self.loss.model

    @property
    def counts(self):
        return self.embedder.counts

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> Tensor:
        columns = list(sentence_features)
        if self.bank is not None and not (len(columns) == 2 and labels is None):
            if len(columns) != 2 or labels is None or labels.ndim != 2:
                raise ValueError("negatives='bank' takes (anchor, positive) texts and a (batch, k) label of "
                                 f"negative corpus ids; got {len(columns)} text columns and label "
                                 f"{None if labels is None else tuple(labels.shape)}")
            anchors, positives = self.embedder.embed(self.model, columns)
            ids = labels
            if self.miner is not None:  # (B, k + P): the k mined negatives, then the anchor's positives
                k = labels.shape[1] - self.bank.positives_width
                ids = self.miner.pick(anchors, self.bank.vectors, labels[:, :k], labels[:, k:])
            negatives = [vectors.to(anchors.dtype) for vectors in self.bank.lookup(ids)]
            return self.loss.compute_loss_from_embeddings([anchors, positives, *negatives], None)
        # Pairs without negatives (the dev split, for the dev loss) are scored the same in every mode.
        live, frozen = (columns, []) if self.negatives == "live" else (columns[:2], columns[2:])
        return self.loss.compute_loss_from_embeddings(self.embedder.embed(self.model, live, frozen), labels)

    def metrics(self) -> dict[str, float]:
        """Measured so far: per training step means of texts embedded with and without gradients,
        real and padded tokens and forwards (step/*), the steps they are over (step/steps), and the
        bank's refreshes and their seconds in all (bank/refreshes, bank/refresh_s)."""
        return step_metrics([self])

    def recent(self) -> dict[str, float]:
        """Per-step figures since the last call (the online miner's: bank/removed_by_margin,
        bank/not_mined), for the training curves; {} without a miner."""
        return self.miner.means() if self.miner is not None else {}

    def get_config_dict(self) -> dict[str, Any]:
        embedder = self.embedder
        return self.loss.get_config_dict() | {
            "negatives": self.negatives, "length_aware": embedder.length_aware, "dedupe": embedder.dedupe,
            "token_budget": embedder.token_budget}

    @property
    def citation(self) -> str | None:
        return getattr(self.loss, "citation", None)
