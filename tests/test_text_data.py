"""The SST DataModule: vocabulary from the training split only, clear errors on bad files, odd sentences."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from lightning_snn.activations import set_threshold_enabled
from lightning_snn.models import create_model
from lightning_snn.recurrent_conversion import OUTPUT_KEY, RECURRENT_KEY, convert_recurrent
from lightning_snn.text_data import PAD_ID, UNK_ID, SSTDataModule, Vocabulary, read_sst_file
from tests.conftest import REPO

SST_DIR = REPO.parent / "shared" / "data" / "sst"


def write_sst(folder: Path, train: list[str], dev: list[str] | None = None, test: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lines in (("train", train), ("dev", dev or train[:1]), ("test", test or train[:1])):
        (folder / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
    return folder


TRAIN = [
    "POSITIVE:0.7 a good film .",
    "NEGATIVE:0.3 a bad film .",
    "VERY_POSITIVE:0.9 A Good , good film",
    "NEUTRAL:0.5",  # an empty sentence
]


def test_vocabulary_comes_from_the_training_split_only(tmp_path):
    dm = SSTDataModule(str(write_sst(tmp_path, TRAIN, test=["NEGATIVE:0.2 an unseen bad word"])), min_freq=1)
    dm.setup("fit")
    # ordered by count, then alphabetically; lowercased
    assert dm.vocab.itos == ["<pad>", "<unk>", "a", "film", "good", ".", ",", "bad"]
    assert dm.vocab_size == 8
    ids, length = dm.test_set[0][0]
    assert length == 4 and ids.tolist() == [UNK_ID, UNK_ID, 7, UNK_ID]  # padded to the split's longest
    assert dm.train_set[3][0].lengths == 0 and bool((dm.train_set[3][0].ids == PAD_ID).all())
    assert [int(dm.train_set[i][1]) for i in range(4)] == [3, 1, 4, 2]
    rare = SSTDataModule(str(tmp_path), min_freq=2)  # words seen once become <unk>, which training then sees
    assert rare.vocab.itos == ["<pad>", "<unk>", "a", "film", "good", "."]


def test_default_collation_gives_padded_ids_and_lengths(tmp_path):
    dm = SSTDataModule(str(write_sst(tmp_path, TRAIN)), min_freq=1)
    dm.setup("fit")
    (ids, lengths), labels = next(iter(DataLoader(dm.train_set, batch_size=4)))
    assert ids.shape == (4, 5) and lengths.tolist() == [4, 4, 5, 0] and labels.tolist() == [3, 1, 4, 2]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("POSITIVE 0.7 a film", "no 'LABEL:score'"),
        ("GOOD:0.7 a film", "unknown label 'GOOD'"),
        ("POSITIVE:high a film", "score 'high' is not a number"),
        ("POSITIVE:1.5 a film", "outside \\[0, 1\\]"),
        ("", "an empty line"),
    ],
)
def test_a_malformed_line_names_file_line_and_format(tmp_path, line, message):
    folder = write_sst(tmp_path, [TRAIN[0], line])
    expected = rf"train\.txt, line 2: .*{message}.*Expected one sentence a line, 'LABEL:score"
    with pytest.raises(ValueError, match=expected):
        SSTDataModule(str(folder)).setup("fit")


def test_a_missing_file_says_what_to_put_there(tmp_path):
    write_sst(tmp_path, TRAIN)
    (tmp_path / "dev.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"dev\.txt' not found: .*train\.txt, dev\.txt, test\.txt.*LABEL:score"):
        SSTDataModule(str(tmp_path)).vocab_size  # noqa: B018 (what the CLI reads first)
    (tmp_path / "empty").mkdir()
    write_sst(tmp_path / "empty", TRAIN)
    (tmp_path / "empty" / "test.txt").write_text("")
    with pytest.raises(ValueError, match="test.txt holds no sentence"):
        SSTDataModule(str(tmp_path / "empty")).setup("fit")


def test_a_checkpoint_of_another_vocabulary_is_refused(tmp_path):
    a = SSTDataModule(str(write_sst(tmp_path / "a", TRAIN)), min_freq=1)
    b = SSTDataModule(str(write_sst(tmp_path / "b", [*TRAIN, "POSITIVE:0.8 great"])), min_freq=1)
    a.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="another vocabulary"):
        a.load_state_dict(b.state_dict())


def test_empty_unknown_and_very_long_sentences_run_through_rnn_and_snn(tmp_path):
    long_sentence = " ".join(["good"] * 300 + ["zebra"] * 300)  # 600 words, half of them unknown
    folder = write_sst(tmp_path, TRAIN, test=["NEUTRAL:0.5", f"POSITIVE:0.9 {long_sentence}", "NEGATIVE:0.1 zzz qqq"])
    dm = SSTDataModule(str(folder), min_freq=1)
    dm.setup("test")
    torch.manual_seed(0)
    model = create_model("rnn", vocab_size=dm.vocab_size, embed_dim=4, hidden_size=6).eval()
    set_threshold_enabled(model, True)
    (x, y) = next(iter(DataLoader(dm.test_set, batch_size=3)))
    assert x.lengths.tolist() == [0, 600, 2]
    logits = model(x)
    assert logits.shape == (3, 5) and bool(torch.isfinite(logits).all())
    # an empty sentence is one silent word: the readout of the RNN's answer to zero input
    silent = model((torch.zeros(1, 1, dtype=torch.long), torch.tensor([1])))
    torch.testing.assert_close(logits[0], silent[0])
    snn = convert_recurrent(model, {RECURRENT_KEY: 1.0, OUTPUT_KEY: float(logits.max().abs()) + 1.0})
    out = snn(x, 2, loops=[1])
    assert out.analog.shape == (3, 5) and out.spiking.shape == (1, 3, 5)


@pytest.mark.skipif(not (SST_DIR / "train.txt").is_file(), reason="the SST-5 files are not at ../shared/data/sst")
def test_the_real_sst5_split():
    dm = SSTDataModule(str(SST_DIR))
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8544, 1101, 2210)
    assert torch.bincount(dm.test_set.labels).tolist() == [279, 633, 390, 509, 399]  # the README's counts
    assert dm.vocab_size == len(Vocabulary.build(read_sst_file(SST_DIR / "train.txt")[0], min_freq=2))
