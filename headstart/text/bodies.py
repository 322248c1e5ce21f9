"""Text bodies: token ids (B, L) in, one feature vector per text out.

Both take a single padded id tensor (the pad id marks padding, so the attention mask is
derived inside), which lets the training loop, the feature cache and the forward-pass
counter treat text exactly like images.

  EncoderBody      a pretrained transformer encoder (Hugging Face) + the card's pooling;
                   depth groups: the embeddings, then each transformer layer
  WordVectorBody   an embedding layer initialised from word vectors for the target
                   vocabulary, then an encoder: "cnn" (convolutions of width 3, 4, 5 with max
                   pooling over time, Kim 2014), "bilstm" (bidirectional LSTM, max pooling) or
                   "mean" (average of the vectors). Before the cnn or bilstm, each word's
                   vector passes through a trainable projection (linear + ReLU, `project` wide):
                   it re-maps fixed vectors for the task (sentiment words that GloVe puts side
                   by side) as a function of the vector, so it applies to words the training
                   texts never had. The words without a pretrained vector (and
                   the unknown word) have rows of their own in `new_words`, so that they train
                   with the encoder while the pretrained rows stay frozen. Depth groups: the
                   pretrained embeddings, then the new words' rows and the encoder
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .options import ENCODERS

CNN_WIDTHS = (3, 4, 5)


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, L, D) states and a (B, L) bool mask -> (B, D)."""
    if mode == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1)
    if mode == "max":
        return hidden.masked_fill(~m, torch.finfo(hidden.dtype).min).amax(1)
    m = m.to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


class EncoderBody(nn.Module):
    def __init__(self, encoder: nn.Module, pad_id: int, pooling: str = "mean", normalize: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.pad_id, self.pooling, self.normalize = int(pad_id), pooling, normalize

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        out = pool(hidden, mask, self.pooling)
        return F.normalize(out, dim=-1) if self.normalize else out

    def depth_groups(self) -> list[list[str]]:
        """Embeddings first, then one group per transformer layer; anything after the last
        layer (a final norm) goes with it."""
        names = [n for n, _ in self.named_parameters()]
        layers = _layer_list(self)
        if layers is None:
            return [names]
        prefix, count = layers
        groups: list[list[str]] = [[] for _ in range(count + 1)]
        seen_layer = False
        for n in names:
            if n.startswith(prefix + "."):
                i = int(n[len(prefix) + 1:].split(".")[0])
                groups[i + 1].append(n)
                seen_layer = True
            else:
                groups[-1 if seen_layer else 0].append(n)
        return [g for g in groups if g]


def _layer_list(model: nn.Module) -> tuple[str, int] | None:
    """The name and length of the longest ModuleList of identical blocks (the transformer layers)."""
    best = None
    for name, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and len(m) >= 2 and len({type(c) for c in m}) == 1:
            if best is None or len(m) > best[1]:
                best = (name, len(m))
    return best


class WordVectorBody(nn.Module):
    def __init__(self, vocab_size: int, dim: int, encoder: str = "cnn", hidden: int = 100, dropout: float = 0.3,
                 pad_id: int = 0, new_words: int = 0, project: int = 0) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}")
        self.kind, self.pad_id, self.hidden = encoder, pad_id, hidden
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        # project = 0: the encoder reads the vectors as they are (runs saved before the projection existed)
        self.project = nn.Sequential(nn.Linear(dim, project), nn.ReLU()) if project and encoder != "mean" else None
        width = project if self.project is not None else dim
        if encoder == "cnn":
            self.convs = nn.ModuleList(nn.Conv1d(width, hidden, k) for k in CNN_WIDTHS)
            self.num_features = hidden * len(CNN_WIDTHS)
        elif encoder == "bilstm":
            self.lstm = nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
            self.num_features = 2 * hidden
        else:
            self.num_features = dim
        self.dropout = nn.Dropout(dropout if encoder != "mean" else 0.0)
        # new_slot[id]: the word's row in new_words, or -1 for a word whose row is in `embedding`
        self.new_words = nn.Embedding(new_words, dim) if new_words else None
        self.register_buffer("new_slot", torch.full((vocab_size,), -1, dtype=torch.long) if new_words else None)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        e = self.embedding(ids)
        if self.new_words is not None:
            slot = self.new_slot[ids]
            e = torch.where((slot >= 0).unsqueeze(-1), self.new_words(slot.clamp(min=0)), e)
        if self.kind == "mean":
            return pool(e, mask, "mean")
        if self.project is not None:
            e = self.project(e)
        if self.kind == "cnn":
            short = max(CNN_WIDTHS) - e.shape[1]
            if short > 0:  # texts shorter than the widest filter: pad (padding is masked out below)
                e = F.pad(e, (0, 0, 0, short))
                mask = F.pad(mask, (0, short))
            x = e.transpose(1, 2)
            pooled = []
            for conv in self.convs:
                h = F.relu(conv(x))  # (B, H, L - width + 1): window j starts at token j
                valid = mask[:, : h.shape[2]].clone()
                valid[:, 0] = True  # a text shorter than k still has its first window
                pooled.append(h.masked_fill(~valid.unsqueeze(1), 0.0).amax(2))
            return self.dropout(torch.cat(pooled, 1))
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(e, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        return self.dropout(pool(out, mask, "max"))

    def set_new_words(self, rows: list[int], vectors: torch.Tensor) -> None:
        """Give the vocabulary's `rows` (words without a pretrained vector) their own trainable
        rows, starting at `vectors`."""
        if self.new_words is None or len(rows) != self.new_words.num_embeddings:
            raise ValueError(f"this body was built for {0 if self.new_words is None else self.new_words.num_embeddings} "
                             f"new words, not {len(rows)}")
        with torch.no_grad():
            self.new_slot.fill_(-1)
            self.new_slot[torch.as_tensor(rows, dtype=torch.long)] = torch.arange(len(rows))
            self.new_words.weight.copy_(vectors)
            self.embedding.weight[rows] = 0.0  # unused: the rows live in new_words

    def depth_groups(self) -> list[list[str]]:
        names = [n for n, _ in self.named_parameters()]
        rest = [n for n in names if not n.startswith("embedding.")]
        return [["embedding.weight"]] + ([rest] if rest else [])
