"""Sentence classification data for the recurrent networks: SST-5 (Stanford Sentiment Treebank).

The paper's appendix A.4 converts a recurrent network trained on the treebank's movie reviews.
:class:`SSTDataModule` reads the sentence-level, five-class split from a folder with
``train.txt``, ``dev.txt`` and ``test.txt`` (the format below), builds the vocabulary from the
**training split only** (words of dev/test that it lacks become ``<unk>``), and yields padded
index tensors with the sentences' lengths. No word vectors are used: the models learn their
embeddings (nothing can be downloaded here).

File format (:data:`SST_FORMAT`), one sentence a line, already tokenised (tokens separated by
single spaces)::

    POSITIVE:0.69444 The Rock is destined to be the 21st Century 's new ...

``LABEL`` is one of :data:`SST_LABELS` (classes 0 to 4), ``score`` the treebank's positivity in
``[0, 1]`` (checked, not used). A line with a label and no words is an empty sentence.

A batch is ``(TokenBatch(ids, lengths), labels)``: ``ids`` ``[B, L]`` int64 with the pad index 0
after each sentence's ``lengths[b]`` words. Every item of a split is padded to the split's
longest sentence, so the default ``DataLoader`` collation works everywhere (the conversion
callback's loaders included); the models trim a batch to its own longest sentence.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch.utils.data import Dataset

from lightning_snn.data import ConversionDataModule, check_loader_settings

#: The five classes, in label order (0 = very negative ... 4 = very positive).
SST_LABELS = ("VERY_NEGATIVE", "NEGATIVE", "NEUTRAL", "POSITIVE", "VERY_POSITIVE")
SST_SPLITS = ("train", "dev", "test")
SST_FORMAT = (
    "one sentence a line, 'LABEL:score word word ...' (tokens separated by spaces; no words = an empty "
    f"sentence), LABEL one of {', '.join(SST_LABELS)}, score a number in [0, 1], e.g. "
    "'POSITIVE:0.69444 The Rock is destined to be ...' (see ../shared/data/sst/README.md or docs/RNN.md)"
)
PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1


class TokenBatch(NamedTuple):
    """Word indices and lengths of a batch of sentences (or of one sentence, unbatched).

    Attributes:
        ids: ``[B, L]`` int64 word indices, :data:`PAD_ID` after each sentence's end.
        lengths: ``[B]`` int64, the number of words of each sentence (0 for an empty one).
    """

    ids: torch.Tensor
    lengths: torch.Tensor


def read_sst_file(path: str | Path) -> tuple[list[list[str]], list[int]]:
    """Sentences (token lists) and labels of one file in :data:`SST_FORMAT`.

    Raises:
        FileNotFoundError: the file is missing (the message says what to put there).
        ValueError: a line is malformed, or the file holds no sentence (the message names the file,
            the line and the expected format).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(path)!r} not found: the SST data folder needs {', '.join(s + '.txt' for s in SST_SPLITS)}, "
            f"each {SST_FORMAT}. Point --data.init_args.data_dir at the folder that holds them."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc}). Expected {SST_FORMAT}.") from exc
    sentences, labels = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens, label = _parse_line(line, path, number)
        sentences.append(tokens)
        labels.append(label)
    if not sentences:
        raise ValueError(f"{path} holds no sentence. Expected {SST_FORMAT}.")
    return sentences, labels


def _parse_line(line: str, path: Path, number: int) -> tuple[list[str], int]:
    head, _, sentence = line.partition(" ")
    label, colon, score = head.partition(":")

    def bad(reason: str) -> ValueError:
        shown = line if len(line) <= 80 else line[:77] + "..."
        return ValueError(f"{path}, line {number}: {shown!r}: {reason}. Expected {SST_FORMAT}.")

    if not line.strip():
        raise bad("an empty line (an empty sentence still needs its 'LABEL:score')")
    if not colon:
        raise bad("no 'LABEL:score' at the start")
    if label not in SST_LABELS:
        raise bad(f"unknown label {label!r}")
    try:
        value = float(score)
    except ValueError:
        raise bad(f"the score {score!r} is not a number") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise bad(f"the score {score} is outside [0, 1]")
    return sentence.split(), SST_LABELS.index(label)


class Vocabulary:
    """Word <-> index: :data:`PAD` = 0, :data:`UNK` = 1, then the training words.

    The words are ordered by falling count, ties alphabetically, so the same training text
    always gives the same indices.

    Args:
        words: the words after ``<pad>`` and ``<unk>``, in index order.
        lowercase: whether :meth:`encode` lowercases (as the words were when counted).
    """

    def __init__(self, words: Sequence[str], lowercase: bool = True) -> None:
        self.itos = [PAD, UNK, *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a vocabulary's words must be distinct (and not <pad> or <unk>).")
        self.lowercase = lowercase

    @classmethod
    def build(
        cls, sentences: Sequence[Sequence[str]], min_freq: int = 1, lowercase: bool = True, max_size: int | None = None
    ) -> Vocabulary:
        """The words of ``sentences`` seen at least ``min_freq`` times (the ``max_size - 2`` most frequent)."""
        counts = Counter(w.lower() if lowercase else w for s in sentences for w in s)
        words = sorted((w for w, n in counts.items() if n >= min_freq), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max(max_size - 2, 0)]
        return cls(words, lowercase)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Indices of ``tokens``; unknown words get :data:`UNK_ID`."""
        if self.lowercase:
            tokens = [t.lower() for t in tokens]
        return [self.stoi.get(t, UNK_ID) for t in tokens]

    def fingerprint(self) -> str:
        """A short hash of the word list: equal vocabularies, equal fingerprints."""
        return hashlib.sha256("\n".join(self.itos).encode()).hexdigest()[:16]


class SentenceDataset(Dataset):
    """Encoded sentences, padded to the longest one, with lengths and labels.

    Items are ``(TokenBatch(ids [L], length []), label [])``; the default collation stacks them.
    """

    def __init__(self, encoded: Sequence[Sequence[int]], labels: Sequence[int]) -> None:
        if len(encoded) != len(labels):
            raise ValueError(f"{len(encoded)} sentences but {len(labels)} labels.")
        width = max([len(s) for s in encoded] + [1])  # at least one column: an all-empty split still pads
        self.ids = torch.full((len(encoded), width), PAD_ID, dtype=torch.long)
        for i, s in enumerate(encoded):
            self.ids[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
        self.lengths = torch.tensor([len(s) for s in encoded], dtype=torch.long)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[TokenBatch, torch.Tensor]:
        return TokenBatch(self.ids[i], self.lengths[i]), self.labels[i]


class SSTDataModule(ConversionDataModule):
    """SST-5 at sentence level: train / dev (validation, model selection) / test.

    Args:
        data_dir: a folder with ``train.txt``, ``dev.txt`` and ``test.txt`` in :data:`SST_FORMAT`.
        batch_size: training batch size (evaluation uses ``eval_batch_size``).
        eval_batch_size: batch size of validation, test and calibration loaders.
        num_workers: DataLoader worker processes (0 is fastest for these small tensors).
        min_freq: training words seen fewer times become ``<unk>`` (with 2, the words seen once
            teach the model an ``<unk>`` embedding, which dev/test words outside the vocabulary use).
        lowercase: lowercase every word before look-up.
        max_length: keep only the first ``max_length`` words of longer sentences; None = all.
        train_samples: use only the first N training sentences (the vocabulary comes from them).
        seed: seed of the calibration subset.
    """

    num_classes = len(SST_LABELS)

    def __init__(
        self,
        data_dir: str = "data/sst",
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        min_freq: int = 2,
        lowercase: bool = True,
        max_length: int | None = None,
        train_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_loader_settings(batch_size, eval_batch_size, train_samples=train_samples, max_length=max_length)
        if isinstance(min_freq, bool) or not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an int >= 1, got {min_freq!r}.")
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.min_freq, self.lowercase, self.max_length = min_freq, lowercase, max_length
        self.train_samples, self.seed = train_samples, seed
        self._raw: dict[str, tuple[list[list[str]], list[int]]] | None = None
        self._vocab: Vocabulary | None = None

    # ---- the files and the vocabulary --------------------------------------------------------
    def _load(self) -> dict[str, tuple[list[list[str]], list[int]]]:
        if self._raw is None:
            raw = {}
            for split in SST_SPLITS:  # every file is checked before any training
                sentences, labels = read_sst_file(self.data_dir / f"{split}.txt")
                if self.max_length is not None:
                    sentences = [s[: self.max_length] for s in sentences]
                raw[split] = sentences, labels
            if self.train_samples is not None:
                sentences, labels = raw["train"]
                raw["train"] = sentences[: self.train_samples], labels[: self.train_samples]
            self._raw = raw
        return self._raw

    @property
    def vocab(self) -> Vocabulary:
        """The vocabulary of the training split (read on first use)."""
        if self._vocab is None:
            sentences, _ = self._load()["train"]
            self._vocab = Vocabulary.build(sentences, min_freq=self.min_freq, lowercase=self.lowercase)
        return self._vocab

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding table: the training words, ``<pad>`` and ``<unk>`` (the CLI links
        it to ``model.vocab_size``)."""
        return len(self.vocab)

    def dataset(self, split: str) -> SentenceDataset:
        """One split, encoded with the training vocabulary."""
        if split not in SST_SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {list(SST_SPLITS)}.")
        sentences, labels = self._load()[split]
        return SentenceDataset([self.vocab.encode(s) for s in sentences], labels)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        self.train_set = self.dataset("train")
        self.val_set = self.dataset("dev")
        self.test_set = self.dataset("test")

    def _calibration_base(self) -> Dataset:
        return self.train_set

    # ---- checkpoints: the vocabulary travels with the weights --------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"vocab_fingerprint": self.vocab.fingerprint(), "vocab_size": len(self.vocab)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Refuse a checkpoint trained with another vocabulary: its embedding rows are other words."""
        saved = state_dict.get("vocab_fingerprint")
        if saved is not None and saved != self.vocab.fingerprint():
            raise ValueError(
                f"the checkpoint was trained with another vocabulary ({state_dict.get('vocab_size')} words, "
                f"fingerprint {saved}) than the one built from {self.data_dir / 'train.txt'} ({len(self.vocab)} "
                f"words, {self.vocab.fingerprint()}): its embedding rows would be read as other words. Use the "
                "training file and settings (min_freq, lowercase, max_length, train_samples) it was trained with."
            )
