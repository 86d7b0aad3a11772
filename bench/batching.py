"""Batched generation inside VLMEvalKit's loop, which asks a model for one item at a time
(vlmeval/inference.py `infer_data`: `model.generate(message=struct, dataset=...)` per row).

`LookAhead` answers a message it has not seen by building the items that loop will ask for next,
in its order (this rank's rows of the dataset, `rank::world`, after `--limit`; each row's prompt
chosen as `infer_data` chooses it, then `preproc_content` as `BaseModel.generate` applies it),
finding the message among them and generating it together with the next `batch_size - 1` in one
batched call; the loop's following calls are answered from that batch. VLMEvalKit's loop, its
files and its scoring are unchanged: the model still returns each item's response when asked.
A message that is not found (another dataset class, a custom prompt this order cannot know) is
generated alone. On a resumed run the items already answered may be generated again inside a
batch, and their answers dropped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable


def message_key(message: list[dict]) -> str:
    return json.dumps(message, sort_keys=True, default=str)


class LookAhead:
    """`answer(model, message, dataset, generate_many)` -> the response to `message`, generated in a
    batch of up to `batch_size` upcoming messages by `generate_many(messages, dataset)`."""

    def __init__(self, batch_size: int, limit: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size {batch_size}: must be >= 1")
        self.batch_size, self.limit = batch_size, limit
        self.answers: dict[str, list[str]] = defaultdict(list)
        self.orders: dict[str, tuple[list[str], list[list[dict]]]] = {}
        self.cursor: dict[str, int] = defaultdict(int)
        self.calls = 0
        """Batched generations made (a test counts them)."""

    def answer(self, model, message: list[dict], dataset: str | None,
               generate_many: Callable[[list[list[dict]], str | None], list[str]]) -> str:
        key = message_key(message)
        if not self.answers[key]:
            batch = self._upcoming(model, message, key, dataset)
            for item, response in zip(batch, generate_many(batch, dataset), strict=True):
                self.answers[message_key(item)].append(response)
            self.calls += 1
        return self.answers[key].pop(0)

    def _upcoming(self, model, message: list[dict], key: str, dataset: str | None) -> list[list[dict]]:
        if self.batch_size == 1 or dataset is None:
            return [message]
        keys, messages = self._order(model, dataset)
        try:  # after the last batch (a message may repeat), else anywhere
            position = keys.index(key, self.cursor[dataset])
        except ValueError:
            try:
                position = keys.index(key)
            except ValueError:
                return [message]
        self.cursor[dataset] = position + self.batch_size
        return messages[position : position + self.batch_size]

    def _order(self, model, dataset: str) -> tuple[list[str], list[list[dict]]]:
        """This rank's messages of `dataset`, in the order VLMEvalKit's loop asks for them."""
        if dataset not in self.orders:
            from vlmeval.dataset import build_dataset
            from vlmeval.smp import get_rank_and_world_size

            built = build_dataset(dataset)
            data = built.data if self.limit is None else built.data.iloc[: self.limit]
            rank, world = get_rank_and_world_size()
            messages = []
            for i in range(rank, len(data), world):
                row = data.iloc[i]
                if getattr(built, "force_use_dataset_prompt", False):
                    struct = built.build_prompt(row)
                elif hasattr(model, "use_custom_prompt") and model.use_custom_prompt(dataset):
                    struct = model.build_prompt(row, dataset=dataset)
                else:
                    struct = built.build_prompt(row)
                messages.append(model.preproc_content(struct))
            self.orders[dataset] = ([message_key(m) for m in messages], messages)
        return self.orders[dataset]
