"""Training the ResNet-50 segmenters and U-Net through minifcn.train: the total loss with
the auxiliary head's (main + 0.5 aux), one step's gradients against the plain-torch twins
in float64, U-Net's labels cropped at the model's own offset, BatchNorm's modes, and an
exact resume with BatchNorm's running statistics. Tiny widths and sizes."""
import numpy as np
import pytest

import minifcn.train_loss
from minifcn.data import ShapesDataset
from minifcn.metrics import ConfusionMatrix
from minifcn.models import DeepLabV3ResNet50, FCNResNet50, UNet
from minifcn.nn import BatchNorm2d, Dropout
from minifcn.optim import SGD, Adam
from minifcn.train import BatchStream, evaluate, train, train_step

from helpers import rel_error

RESNETS = {"fcn": FCNResNet50, "deeplabv3": DeepLabV3ResNet50}
WIDTH = 1 / 16


def _labels(rng, shape, n_class=4):
    labels = rng.integers(0, n_class, shape)
    labels[rng.random(shape) < 0.1] = 255                       # ignored pixels
    return labels


def _no_dropout(model):
    for _, m in model.named_modules():
        if isinstance(m, Dropout):
            m.training = False


def _recording(model):
    """Keep each forward's main and auxiliary scores in ``model.seen``."""
    forward, model.seen = model.forward, []

    def recorded(x):
        y = forward(x)
        model.seen.append((y.copy(), model.aux_output.copy()))
        return y
    model.forward = recorded
    return model


@pytest.mark.parametrize("kind", RESNETS)
def test_logged_loss_is_main_plus_half_aux(torch, tmp_path, kind):
    """Two steps; each logged loss equals torch's cross-entropy of the scores the step saw,
    main + 0.5 * aux (ignore_index 255)."""
    rng = np.random.default_rng(0)
    model = _recording(RESNETS[kind](n_class=4, width=WIDTH, dtype=np.float64, rng=0))
    batches = [(rng.standard_normal((2, 3, 32, 32)), _labels(rng, (2, 32, 32)))
               for _ in range(2)]
    log = tmp_path / "log.csv"
    train(model, Adam(model.parameters(), lr=1e-3), iter(batches), iters=2, log_every=1,
          log_path=log, progress=False)
    logged = [float(line.split(",")[1]) for line in log.read_text().splitlines()[1:]]
    assert len(logged) == len(model.seen) == 2
    F = torch.nn.functional
    for (out, aux), loss, (_, labels) in zip(model.seen, logged, batches):
        labels = torch.from_numpy(labels)
        main_loss = F.cross_entropy(torch.from_numpy(out), labels, ignore_index=255)
        aux_loss = F.cross_entropy(torch.from_numpy(aux), labels, ignore_index=255)
        assert loss == pytest.approx(float(main_loss + 0.5 * aux_loss), rel=1e-12)
        assert abs(float(aux_loss)) > 1e-3                     # the aux term is seen


def _resnet_twins(torch, kind):
    import torch_segmentation
    torch.manual_seed(0)
    net = torch_segmentation.randomize_(torch, torch_segmentation.Segmenter(
        kind, n_class=4, width=WIDTH).double())
    ours = RESNETS[kind](n_class=4, width=WIDTH, dtype=np.float64, init="zeros")
    ours.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, strict=True)
    return net, ours


def _step_errors(torch, net, ours, x, labels, aux_weight=0.5):
    """Relative errors of every parameter gradient and buffer after one train_step of
    ``ours`` against torch's backward of CE(out) + aux_weight * CE(aux), training mode."""
    F = torch.nn.functional
    net.train(), ours.train()
    for m in net.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    _no_dropout(ours)
    t = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    out = net(torch.from_numpy(x))
    if isinstance(out, tuple):
        out, aux = out
        loss = F.cross_entropy(out, t, ignore_index=255) + aux_weight * F.cross_entropy(
            aux, t, ignore_index=255)
    else:                                                       # U-Net: the labels' centre
        top, left = ((s - o) // 2 for s, o in zip(t.shape[1:], out.shape[2:]))
        loss = F.cross_entropy(out, t[:, top:top + out.shape[2], left:left + out.shape[3]],
                               ignore_index=255)
    loss.backward()
    ours_loss = train_step(ours, SGD(ours.parameters(), lr=1e-9), x, labels)
    errors = {"loss": rel_error(np.asarray(ours_loss), loss.detach().numpy())}
    grads = {name: p.grad for name, p in net.named_parameters()}
    errors.update({name: rel_error(p.grad, grads[name].numpy())
                   for name, p in ours.named_parameters()})
    state = net.state_dict()
    errors.update({name: rel_error(b.data, state[name].numpy())
                   for name, b in ours.named_buffers()})
    return errors


@pytest.mark.parametrize("kind", RESNETS)
def test_one_step_with_aux_matches_torch_in_float64(torch, rng, kind):
    net, ours = _resnet_twins(torch, kind)
    x = rng.standard_normal((2, 3, 33, 33))
    errors = _step_errors(torch, net, ours, x, _labels(rng, (2, 33, 33)))
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-10, f"{worst}: relative error {errors[worst]:.1e}"
    assert any(name.startswith("aux_classifier.") for name in errors)


def test_unet_step_matches_torch_on_the_labels_centre(torch, rng):
    import torch_unet
    torch.manual_seed(0)
    net = torch_unet.UNet(4, 3, base=2, depth=2).double()
    ours = UNet(4, base=2, depth=2, dtype=np.float64, init="zeros")
    ours.load_state_dict({k: v.numpy() for k, v in net.state_dict().items()}, strict=True)
    x = rng.standard_normal((2, 3, 48, 52))
    errors = _step_errors(torch, net, ours, x, _labels(rng, (2, 48, 52)))
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-10, f"{worst}: relative error {errors[worst]:.1e}"


def test_unet_labels_are_cropped_at_the_models_offset(rng, monkeypatch):
    """Two steps and an evaluation: the loss's targets and the confusion matrix's labels
    are the labels under the output, at ``model.output_offset`` (the input's centre)."""
    model = UNet(4, base=2, depth=2, dtype=np.float64, rng=0)
    targets, real = [], minifcn.train_loss.softmax_cross_entropy_forward

    def spy(scores, target, **options):
        targets.append(target)
        return real(scores, target, **options)

    monkeypatch.setattr(minifcn.train_loss, "softmax_cross_entropy_forward", spy)
    x, labels = rng.standard_normal((2, 3, 44, 60)), _labels(rng, (2, 44, 60))
    opt = Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        train_step(model, opt, x, labels)
    top, left = model.output_offset(44, 60)
    assert (top, left) == (20, 20) == ((44 - 4) // 2, (60 - 20) // 2)   # the centre
    for target in targets:
        np.testing.assert_array_equal(target, labels[:, top:top + 4, left:left + 20])
    model.eval()
    matrix = ConfusionMatrix(4, ignore_index=255)
    matrix.update(model(x).argmax(axis=1), labels[:, top:top + 4, left:left + 20])
    got = evaluate(model, [(x, labels)], 4)
    np.testing.assert_array_equal(got.class_iou, matrix.compute().class_iou)


def test_batch_norm_trains_in_steps_and_is_frozen_in_validation(rng):
    model = FCNResNet50(n_class=4, width=WIDTH, rng=0)
    x, labels = rng.standard_normal((2, 3, 24, 24)).astype(np.float32), _labels(rng, (2, 24, 24))
    model.train()
    train_step(model, Adam(model.parameters(), lr=1e-3), x, labels)
    before = {k: v.copy() for k, v in model.state_dict().items() if "running" in k
              or "num_batches" in k}
    assert int(before["backbone.bn1.num_batches_tracked"]) == 1
    assert not np.array_equal(before["backbone.bn1.running_mean"],
                              np.zeros_like(before["backbone.bn1.running_mean"]))
    evaluate(model, [(x, labels)], 4)
    after = model.state_dict()
    for name, value in before.items():                          # validation: eval mode
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert model.training and all(m.training for _, m in model.named_modules()
                                  if isinstance(m, BatchNorm2d))
    model.eval()
    evaluate(model, [(x, labels)], 4)
    assert not model.training                                   # the mode it found


def _resnet_run():
    data = ShapesDataset(8, size=32, seed=0)
    model = DeepLabV3ResNet50(n_class=4, width=WIDTH, rng=0)
    opt = Adam(model.parameters(), lr=1e-3)
    return model, opt, BatchStream(data, 2, seed=0)


def test_resnet_resume_is_exact_with_running_statistics(tmp_path):
    """2 + 2 iterations with a checkpoint between equal 4 in one run, bit for bit: every
    parameter, running mean and variance, and num_batches_tracked (4)."""
    model, opt, batches = _resnet_run()
    train(model, opt, batches, iters=4, progress=False)
    straight = model.state_dict()
    model, opt, batches = _resnet_run()
    train(model, opt, batches, iters=2, checkpoint_dir=tmp_path, progress=False)
    model, opt, batches = _resnet_run()
    train(model, opt, batches, iters=4, checkpoint_dir=tmp_path, progress=False,
          resume=tmp_path / "last.npz")
    resumed = model.state_dict()
    assert resumed.keys() == straight.keys()
    assert int(resumed["classifier.0.convs.0.1.num_batches_tracked"]) == 4
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf"), "half", True])
def test_a_bad_aux_weight_is_refused_by_name(weight):
    model = FCNResNet50(n_class=4, width=WIDTH, rng=0)
    with pytest.raises(ValueError, match="aux_weight must be a finite number"):
        train(model, Adam(model.parameters()), iter([]), iters=1, aux_weight=weight,
              progress=False)


def _unet_setup(**options):
    """A U-Net run as ``minifcn train --arch unet`` builds it: base 4, depth 2, 48x48."""
    from minifcn.training_setup import TrainingSetup

    data, val = ShapesDataset(6, size=48, seed=0), ShapesDataset(2, size=48, seed=1)
    options = {"width": WIDTH, "depth": 2, **options}
    return TrainingSetup.build(data, val, model="unet", batch_size=2, lr=3e-3, iters=5,
                               **options)


def test_unet_resume_is_exact_log_and_parameters(tmp_path):
    """5 iterations in one run equal 2, stop, resume to 5, bit for bit: every log.csv row
    (a logging window spans the stop: rows every 3, validation at 4) and every parameter
    and Adam moment."""
    runs = {}
    for name, stops in (("once", [None]), ("twice", [2, None])):
        out = tmp_path / name
        for stop in stops:
            resume = None if stop is not None or name == "once" else out / "last.npz"
            setup = _unet_setup()
            setup.run(out, val_every=4, log_every=3, resume=resume, stop_after=stop,
                      progress=False)
        runs[name] = ((out / "log.csv").read_text(), setup.model.state_dict(),
                      setup.optimizer.state_dict())
    (log, weights, moments), (log2, weights2, moments2) = runs["once"], runs["twice"]
    assert [row.split(",")[0] for row in log.splitlines()[1:]] == ["3", "4", "5"]
    assert log2 == log
    assert weights.keys() == weights2.keys() and "up.1.weight" in weights
    for name in weights:
        np.testing.assert_array_equal(weights2[name], weights[name], err_msg=name)
    np.testing.assert_equal(moments2, moments)


@pytest.mark.parametrize("option, expected", [
    ({"depth": 1}, "depth: 2 in the checkpoint, 1 now"),
    ({"base": 8}, "base: 4 in the checkpoint, 8 now"),
], ids=["depth", "base"])
def test_unet_resume_with_another_depth_or_base_is_refused_by_name(tmp_path, option,
                                                                   expected):
    from minifcn.checkpoint import ResumeMismatch, checkpoint_config

    _unet_setup().run(tmp_path, stop_after=1, progress=False)
    _, config = checkpoint_config(tmp_path / "last.npz")
    assert (config["base"], config["depth"]) == (4, 2)
    with pytest.raises(ResumeMismatch, match=expected):
        _unet_setup(**option).run(tmp_path, resume=tmp_path / "last.npz", progress=False)
