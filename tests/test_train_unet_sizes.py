"""U-Net's sizes in ``minifcn train`` on data sets of mixed sizes without ``--crop``: every
item is checked before the run (from the image headers), an item of a size U-Net cannot
take is refused by name and nothing is written; items of sizes it takes, mixed, train in
padded batches; ``--scale`` needs ``--crop``; and a data set that cannot state its sizes
has each item checked at the step it arrives, with the log and checkpoints left whole."""
import numpy as np
import pytest

from minifcn import cli
from minifcn.checkpoint import checkpoint_config
from minifcn.data import ShapesDataset
from minifcn.training_setup import TrainingSetup

TINY = ["--arch", "unet", "--width", "0.0625", "--depth", "2", "--no-progress",
        "--classes", "background,disc,rectangle,triangle", "--iters", "2"]
# depth 2 takes sides S with S + 4 a multiple of 4, S >= 44: 44, 48, 52, ...


def _voc(root, **splits):
    """A VOC folder whose splits hold generated items of the given (H, W) sizes, in order;
    item k of split s has the id ``s<k>_000000``."""
    for split, sizes in splits.items():
        ids = []
        for k, size in enumerate(sizes):
            data = ShapesDataset(1, size=size, seed=k)
            ids += data.write_voc(root, "scratch", prefix=f"{split}{k}")
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text(
            "".join(f"{i}\n" for i in ids))
    return str(root)


@pytest.mark.parametrize("splits, expected", [
    ({"train": [(48, 48)] * 3 + [(50, 48)], "val": [(48, 48)]},
     "cannot take height 50: its level-1 map would be 19 pixels, odd before the 2x2 pool."
     " It takes sizes S with S + 4 a multiple of 4 and S >= 44 (S = 2^depth * (b + 8) - 4);"
     " the nearest are 48 or 52 (training item 3 ('train3_000000') is 50x48)"),
    ({"train": [(48, 48), (48, 46), (48, 48), (54, 48)], "val": [(48, 48)]},
     "cannot take width 46: its level-1 map would be 17 pixels, odd before the 2x2 pool. It"
     " takes sizes S with S + 4 a multiple of 4 and S >= 44 (S = 2^depth * (b + 8) - 4); the"
     " nearest are 44 or 48 (training item 1 ('train1_000000') is 48x46; and 1 more item of"
     " sizes it cannot take)"),
    ({"train": [(48, 48)] * 2, "val": [(48, 48), (44, 48), (40, 48)]},
     "cannot take height 40: its maps would vanish. It takes sizes S with S + 4 a multiple of"
     " 4 and S >= 44 (S = 2^depth * (b + 8) - 4); the nearest are 44"
     " (validation item 2 ('val2_000000') is 40x48)"),
], ids=["later-training-item", "two-items", "validation-item"])
def test_an_item_unet_cannot_take_is_refused_before_the_run(tmp_path, capsys, splits,
                                                            expected):
    data, out = _voc(tmp_path / "data", **splits), tmp_path / "run"
    assert cli.main(["train", "--data-dir", data, *TINY, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"minifcn: error: train: UNet(depth=2) {expected}\n"
    assert not out.exists()                                     # nothing written


def test_mixed_sizes_unet_takes_train_in_padded_batches(tmp_path, capsys):
    """As for the FCNs, a batch is padded to its largest height and width (ignored labels),
    each some item's, so a size U-Net takes; validation batches hold one size each."""
    data = _voc(tmp_path / "data", train=[(48, 52), (52, 44), (44, 48), (48, 48)],
                val=[(52, 44), (48, 48)])
    out = tmp_path / "run"
    assert cli.main(["train", "--data-dir", data, *TINY, "--batch-size", "2",
                     "--val-every", "1", "--out", str(out)]) == 0
    assert "trained unet for 2 iterations" in capsys.readouterr().out
    assert checkpoint_config(out / "last.npz")[0] == 2


def test_scale_without_crop_is_refused_and_with_a_crop_trains(tmp_path, capsys):
    data = _voc(tmp_path / "data", train=[(48, 48)] * 2, val=[(48, 48)])
    scale = ["--scale", "0.8", "1.2", "--log-every", "1"]
    assert cli.main(["train", "--data-dir", data, *TINY, *scale,
                     "--out", str(tmp_path / "refused")]) == 2
    assert capsys.readouterr().err == (
        "minifcn: error: train: --scale without --crop gives U-Net rescaled sizes, most of "
        "which it cannot take; give --crop (a size it takes) too\n")
    assert not (tmp_path / "refused").exists()
    with pytest.raises(ValueError, match=r"^scale \(0.8, 1.2\) without a crop gives U-Net"):
        TrainingSetup.build(ShapesDataset(2, size=48), model="unet", width=1 / 16, depth=2,
                            scale=(0.8, 1.2))
    assert cli.main(["train", "--data-dir", data, *TINY, *scale, "--crop", "44",
                     "--out", str(tmp_path / "run")]) == 0


class _Unsized:
    """A data set that cannot state its sizes: generated items, item 3 of another size."""

    n_class = 4

    def __init__(self):
        self.items = [ShapesDataset(1, size=48, seed=k)[0] for k in range(3)]
        self.items.append(ShapesDataset(1, size=(52, 50), seed=3)[0])

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_an_unsized_data_sets_item_is_refused_at_its_step_leaving_the_run_whole(tmp_path):
    """Seed 1 draws the items in the order 2, 0, 1, 3: item 3 arrives at step 4, and steps
    1 to 3 stay logged and checkpointed as they were."""
    setup = TrainingSetup.build(_Unsized(), model="unet", width=1 / 16, depth=2, iters=20,
                                seed=1)
    with pytest.raises(ValueError) as caught:
        setup.run(tmp_path, log_every=1, checkpoint_every=1, progress=False)
    assert str(caught.value).startswith("UNet(depth=2) cannot take width 50")
    assert str(caught.value).endswith("the nearest are 48 or 52 (training item 3 is 52x50)")
    rows = (tmp_path / "log.csv").read_text().splitlines()[1:]
    last = checkpoint_config(tmp_path / "last.npz")[0]
    assert last == 3
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, last + 1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz", "log.csv"]
    assert np.isfinite(float(rows[-1].split(",")[1]))
