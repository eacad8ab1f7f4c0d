"""The loss every attack raises, computed in batches: mean NLL (nats/token) of the target.

Seq2seq: the NLL of the reference summary given the (attacked) encoder input. Causal LM: the NLL
of the original continuation tokens only; the input's own tokens, trigger and flipped tokens
included, are never scored. Scoring runs in the one inference context (inference mode,
cached weights, the stage's autocast); gradients w.r.t. the input embeddings run one chunk per
forward/backward, each in its own grad-enabled context (a cached weight must never serve two
backward passes). Rows are sorted by length and chunked so
batches pad little. The objective counts the sequences it serves and the seconds spent inside the
model, for query budgets and the efficiency benchmark.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from monolm.constraints.base import ModelTransform
from monolm.inference import inference_context

Row = tuple[tuple[int, ...], tuple[int, ...]]  # (model input ids, target ids)
IGNORE = -100


@dataclass
class _Batch:
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor  # [n, t] target ids aligned with the logits kept, IGNORE elsewhere


class Objective:
    def __init__(
        self,
        model: PreTrainedModel,
        transform: ModelTransform,
        pad_id: int,
        batch_size: int,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.transform = transform
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.autocast_dtype = autocast_dtype
        self.seq2seq = bool(model.config.is_encoder_decoder)
        self.device = next(model.parameters()).device
        self.queries = 0  # sequences forwarded (gradient passes included)
        self.gradient_queries = 0  # sequences also back-propagated
        self.model_seconds = 0.0  # wall time inside model forward/backward calls

    @property
    def embeddings(self) -> torch.Tensor:
        return self.model.get_input_embeddings().weight

    def inference(self, grad: bool = False) -> contextlib.AbstractContextManager[None]:
        """The one inference context (`monolm.inference.inference_context`): scoring and
        `model.generate` (grad=False), or one gradient pass (grad=True)."""
        return inference_context(
            self.model, self.transform.cached_weights, self.autocast_dtype, grad
        )

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.model_seconds += time.perf_counter() - start

    def _padded(self, rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
        width = max(len(r) for r in rows)
        return torch.tensor(
            [list(r) + [value] * (width - len(r)) for r in rows], device=self.device
        )

    def _batch(self, rows: Sequence[Row]) -> _Batch:
        if self.seq2seq:
            ids = self._padded([r[0] for r in rows], self.pad_id)
            labels = self._padded([r[1] for r in rows], IGNORE)
            decoder_ids = self.model.prepare_decoder_input_ids_from_labels(labels=labels)
            mask = [[1] * len(r[0]) + [0] * (ids.shape[1] - len(r[0])) for r in rows]
            return _Batch(
                {
                    "input_ids": ids,
                    "attention_mask": torch.tensor(mask, device=self.device),
                    "decoder_input_ids": decoder_ids,
                },
                labels,
            )
        full = [r[0] + r[1] for r in rows]
        ids = self._padded(full, self.pad_id)
        width = ids.shape[1]
        # Position j predicts token j + 1: label the positions just before each target token.
        # Built as lists and moved once (no per-row host-to-device copies on a GPU).
        mask = [[1] * len(f) + [0] * (width - len(f)) for f in full]
        shifted = [
            [IGNORE] * (len(inp) - 1) + list(tgt) + [IGNORE] * (width + 1 - len(inp) - len(tgt))
            for inp, tgt in rows
        ]
        keep = width - min(len(r[0]) for r in rows) + 1
        labels = torch.tensor(shifted, device=self.device)[:, -keep:]
        return _Batch(
            {
                "input_ids": ids,
                "attention_mask": torch.tensor(mask, device=self.device),
                "logits_to_keep": keep,
            },
            labels,
        )

    def _nll(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean NLL per row over its labelled positions (fp32 log-softmax)."""
        per_token = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=IGNORE,
            reduction="none",
        ).view(labels.shape)
        counts = (labels != IGNORE).sum(1).clamp(min=1)
        return per_token.sum(1) / counts

    def _chunks(self, rows: Sequence[Row]) -> Iterator[list[int]]:
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]) + len(rows[i][1]))
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def losses(self, rows: Sequence[Row]) -> list[float]:
        """The loss of every row (batched forward passes, no gradient)."""
        out = [0.0] * len(rows)
        with self.inference():
            for chunk in self._chunks(rows):
                batch = self._batch([rows[i] for i in chunk])
                with self._timed():
                    logits = self.model(**batch.inputs, use_cache=False).logits
                    values = self._nll(logits, batch.labels).tolist()
                for i, value in zip(chunk, values, strict=True):
                    out[i] = value
        self.queries += len(rows)
        return out

    def gradients(self, rows: Sequence[Row]) -> tuple[list[float], list[torch.Tensor]]:
        """Loss and d(loss)/d(input embeddings) [len(input), dim] (fp32) of every row."""
        losses = [0.0] * len(rows)
        grads: list[torch.Tensor] = [torch.empty(0)] * len(rows)
        embed = self.model.get_input_embeddings()
        for chunk in self._chunks(rows):
            with self.inference(grad=True):
                batch = self._batch([rows[i] for i in chunk])
                inputs = dict(batch.inputs)
                with self._timed():
                    embeds = embed(inputs.pop("input_ids")).detach().requires_grad_(True)
                    logits = self.model(**inputs, inputs_embeds=embeds, use_cache=False).logits
                    values = self._nll(logits, batch.labels)
                    (grad,) = torch.autograd.grad(values.sum(), embeds)
            for row, i in enumerate(chunk):
                losses[i] = float(values[row].detach())
                grads[i] = grad[row, : len(rows[i][0])].float()
        self.queries += len(rows)
        self.gradient_queries += len(rows)
        return losses, grads
