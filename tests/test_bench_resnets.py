"""``minifcn bench fcn`` with torchvision's FCN-ResNet50 and DeepLabV3-ResNet50 and with
U-Net: each side's forward and training step (the auxiliary loss weighted 0.5; U-Net's
against the labels' centre) run, in process here; the FLOPs come from the summary;
DeepLabV3's step at batch 1 and U-Net at a size it cannot take are refused before anything
runs."""
import numpy as np
import pytest

from minifcn import cli
from minifcn.bench.network import NetworkSpec, _inputs, _minifcn_side, _torch_side, network_flops
from minifcn.summary import summarize_arch, totals


def _spec(arch):
    return NetworkSpec(arch=arch, size=(40, 44), width=1 / 16, n_class=5, batch=2, repeat=1,
                       warmup=0)


@pytest.mark.parametrize("arch", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_both_sides_run_forward_and_a_step_with_the_auxiliary_loss(torch, arch):
    spec = _spec(arch)
    x, target = _inputs(spec)
    forward, step, _, _ = _minifcn_side(spec, x, target)
    assert forward().shape == (2, 5, 40, 44)
    step()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)        # tiny layers: OpenMP's barriers cost more than they save
    try:
        t_forward, t_step, _, _ = _torch_side(spec, x, target)
        out, aux = t_forward()
        assert tuple(out.shape) == tuple(aux.shape) == (2, 5, 40, 44)
        t_step()
    finally:
        torch.set_num_threads(threads)
    assert network_flops(spec) == 2 * totals(summarize_arch(arch, (40, 44), width=1 / 16,
                                                            n_class=5)).flops


def test_minifcns_step_fills_the_auxiliary_heads_gradients(monkeypatch):
    from minifcn.models import FCNResNet50

    built = []
    original = FCNResNet50.__init__

    def keep(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)
    monkeypatch.setattr(FCNResNet50, "__init__", keep)
    spec = _spec("fcn_resnet50")
    _, step, _, _ = _minifcn_side(spec, *_inputs(spec))
    step()
    model, = built
    assert model.training
    assert all(p.grad is not None and np.abs(p.grad).sum() > 0
               for name, p in model.named_parameters() if name.startswith("aux_classifier.4"))


def test_deeplabv3_needs_a_batch_of_two(capsys):
    assert cli.main(["bench", "fcn", "--arch", "deeplabv3_resnet50", "--size", "32"]) == 2
    assert "deeplabv3_resnet50's training step needs --batch 2 or more" in \
        capsys.readouterr().err


def test_the_forward_is_inference_even_at_batch_1(torch):
    """Eval mode: DeepLabV3's image pooling BatchNorm sees one value per channel at batch 1,
    which PyTorch refuses in training mode and allows on running statistics."""
    spec = _spec("deeplabv3_resnet50")._replace(batch=1)
    x, target = _inputs(spec)
    assert _minifcn_side(spec, x, target)[0]().shape == (1, 5, 40, 44)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert tuple(_torch_side(spec, x, target)[0]()[0].shape) == (1, 5, 40, 44)
    finally:
        torch.set_num_threads(threads)


def test_unet_both_sides_on_the_labels_centre(torch):
    spec = NetworkSpec(arch="unet", size=(188, 204), width=1 / 32, n_class=3, batch=1,
                       repeat=1, warmup=0)
    x, target = _inputs(spec)
    assert target.shape == (1, 4, 20)                      # 188 - 184, 204 - 184
    forward, step, _, _ = _minifcn_side(spec, x, target)
    assert forward().shape == (1, 3, 4, 20)
    step()
    t_forward, t_step, _, _ = _torch_side(spec, x, target)
    assert tuple(t_forward().shape) == (1, 3, 4, 20)
    t_step()
    assert network_flops(spec) == totals(summarize_arch("unet", (188, 204),
                                                        width=1 / 32, n_class=3)).flops


def test_unet_at_a_size_it_cannot_take_is_refused(capsys):
    assert cli.main(["bench", "fcn", "--arch", "unet", "--size", "190x188"]) == 2
    assert "bench: --size for unet: UNet(depth=4) cannot take height 190" in \
        capsys.readouterr().err
