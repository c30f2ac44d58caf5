"""The lessons in examples/lessons/ run as a learner runs them, and what they print is true.

Each lesson runs in this process with ``runpy`` (as ``python lesson.py`` would, under
``__main__``), writing its PNGs under tmp_path; the test then checks the numbers the lesson
printed against the ops they explain, through the variables the lesson printed them from.
A lesson that stops matching the code fails here.
"""
import pathlib
import re
import runpy
import sys

import numpy as np
import pytest

import minifcn.ops as ops

ROOT = pathlib.Path(__file__).parent.parent
LESSONS = ROOT / "examples" / "lessons"
ORDER = ["01_im2col", "02_conv_transpose", "03_max_pool", "04_bilinear", "05_softmax_loss",
         "06_fcn8s", "07_your_layer", "08_classifier_to_segmenter",
         "09_dilation_aspp", "10_groups_batch_norm"]


def run_lesson(name, tmp_path, monkeypatch, capsys):
    """Run lesson ``name`` as __main__; return (its globals, what it printed)."""
    path = LESSONS / f"{name}.py"
    monkeypatch.setenv("MINIFCN_LESSON_OUT", str(tmp_path))
    monkeypatch.setattr(sys, "argv", [str(path)])
    monkeypatch.syspath_prepend(str(LESSONS))
    monkeypatch.chdir(tmp_path)
    algorithm, printing = ops.get_algorithm(), np.get_printoptions()
    try:
        names = runpy.run_path(str(path), run_name="__main__")
    finally:                                  # what the lessons set for themselves
        ops.set_algorithm(algorithm)
        np.set_printoptions(**printing)
    printed = capsys.readouterr().out
    pngs = sorted(p.name for p in (tmp_path / name[:2]).glob("*.png"))
    assert pngs, f"{name} wrote no PNG into {tmp_path / name[:2]}"
    return names, printed


def small(a, tol=1e-12):
    return abs(float(a)) <= tol


# --- the lessons' shape ------------------------------------------------------------------

def test_every_lesson_is_listed_and_tested():
    on_disk = sorted(p.stem for p in LESSONS.glob("[0-9][0-9]_*.py"))
    assert on_disk == ORDER
    tests = {name for name in globals() if name.startswith("test_lesson_")}
    assert {f"test_lesson_{n}" for n in ORDER} <= tests


@pytest.mark.parametrize("name", ORDER)
def test_lesson_is_a_percent_script(name):
    """jupytext's percent format: cells open with '# %%', prose cells are markdown."""
    text = (LESSONS / f"{name}.py").read_text()
    assert text.startswith("# %% [markdown]\n# # Lesson ")
    assert text.count("# %% [markdown]") >= 3 and re.search(r"^# %%$", text, re.M)
    assert "set_algorithm(\"reference\")" in text


def test_readme_lists_the_lessons_in_order():
    readme = (ROOT / "README.md").read_text()
    found = re.findall(r"examples/lessons/(\d\d_\w+)\.py", readme)
    assert [n for i, n in enumerate(found) if n not in found[:i]] == ORDER


# --- lesson by lesson -----------------------------------------------------------------------

def test_lesson_01_im2col(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("01_im2col", tmp_path, monkeypatch, capsys)
    np.testing.assert_array_equal(g["col"][:, 0], [0, 1, 4, 5])
    np.testing.assert_array_equal(g["col"][:, -1], [10, 11, 14, 15])
    for name in ("y_op", "y_loop"):
        np.testing.assert_array_equal(g[name], g["y_gemm"])
    np.testing.assert_array_equal(g["dW_op"], g["dW_gemm"])
    np.testing.assert_array_equal(g["dx_op"], g["dx_gemm"])
    assert "conv2d_forward == W @ im2col(x): True" in out
    assert "the same dW: True  and the same dx: True" in out
    assert abs(g["lhs"] - g["rhs"]) <= 1e-12 * abs(g["lhs"])
    assert sorted(set(g["counts"].ravel())) == [1, 2, 4]
    assert small(g["torch_diff"])


def test_lesson_02_conv_transpose(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("02_conv_transpose", tmp_path, monkeypatch, capsys)
    C, z = g["C"], g["z"]
    assert C.shape == (4, 25)
    np.testing.assert_array_equal(C[0].reshape(5, 5)[:3, :3], g["weight"][0, 0])
    np.testing.assert_array_equal(g["y_t"][0, 0], (C.T @ z.ravel()).reshape(5, 5))
    assert "C^T z == conv_transpose2d(z): True" in out
    assert small(g["backward_is_conv"]) and small(g["forward_is_conv_grad"])
    for name, (formula, by_function, by_op) in g["sizes"].items():
        assert formula == by_function == by_op, name
    assert [v[2] for v in g["sizes"].values()] == [7, 8, 22, 88, 40]
    assert "takes 7 and 8 to: 4 4" in out
    assert g["inner_k3"] == [1, 2, 4] and g["inner_k4"] == [4]
    assert small(g["torch_diff"])


def test_lesson_03_max_pool(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("03_max_pool", tmp_path, monkeypatch, capsys)
    x, y = g["x"][0, 0], g["y"][0, 0]
    assert g["y_floor"].shape[2:] == (2, 2) and g["y"].shape[2:] == (3, 3)
    expected = [[x[2 * p:2 * p + 2, 2 * q:2 * q + 2].max() for q in range(3)] for p in range(3)]
    np.testing.assert_array_equal(y, expected)
    assert g["vgg_ceil"] == [349, 175, 88, 44, 22] and g["vgg_floor"][-1] == 21
    assert (g["ceil_formula"], g["dropped"]) == (3, 2)
    np.testing.assert_array_equal(g["route"], g["dx"][0, 0])       # argmax route == gradient
    np.testing.assert_array_equal(g["winner_value"], y)
    assert "the argmax route gives the same: True" in out
    assert "each winner holds its window's maximum y: True" in out
    assert g["dx3"][0, 0, 2, 2] == 4 and g["dx3"].sum() == g["y3"].size
    tie = np.zeros((4, 4))
    tie[::2, ::2] = 1                                              # the top-left of each window
    np.testing.assert_array_equal(g["dx_tie"][0, 0], tie)
    assert small(g["torch_diff"])


def test_lesson_04_bilinear(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("04_bilinear", tmp_path, monkeypatch, capsys)
    np.testing.assert_allclose(g["A"][:3], [[1, 0, 0], [0.75, 0.25, 0], [0.25, 0.75, 0]])
    np.testing.assert_allclose(g["A"].sum(axis=1), 1)
    assert small(g["matrix_forward"]) and small(g["matrix_backward"])
    np.testing.assert_allclose(g["tent"], [0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(g["K4"], np.outer(g["tent"], g["tent"]))
    for s, (equal, rows, others) in g["rows_equal"].items():   # T == A inside the border
        assert (equal, rows, others) == (6 * s - s, 6 * s, s), s
    np.testing.assert_allclose(g["T2"][[0, -1]].sum(axis=1), [0.75, 0.75])
    assert small(g["inside"]) and g["border"] > 0.1
    np.testing.assert_allclose(np.array(g["first_rows_ratio"]), [[0.625, 0.875]] * 2)
    assert g["corners_inside"] > 0.1
    assert small(g["channels_apart"])
    assert small(g["torch_diff"])
    assert "the others are rows [0, 1, 2, 3, 44, 45, 46, 47]" in out


def test_lesson_05_softmax_loss(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("05_softmax_loss", tmp_path, monkeypatch, capsys)
    assert np.isnan(g["naive"]).all() and np.isfinite(g["stable"]).all()
    np.testing.assert_allclose(g["stable"][0], np.exp([0, 1, 2]) / np.exp([0, 1, 2]).sum(),
                               rtol=1e-15)
    np.testing.assert_allclose(ops.log_softmax(g["far"])[0], [-1000, 0])
    assert abs(float(g["loss"]) - g["loss_hand"]) < 1e-15
    np.testing.assert_allclose(g["grad"][0], g["grad_hand"], atol=1e-16)
    assert g["one_pixel"].passed
    assert g["n_valid"] == 13 and "13 valid pixels of 20" in out
    assert abs(float(g["mean_loss"]) - float(g["pixel_loss"].sum()) / 13) < 1e-15
    assert not (g["d_mean"] * ~g["valid"][:, None]).any()           # void: zero gradient
    assert small(max_diff_of(g["d_mean"], g["grad_by_hand"]))
    assert abs(float(g["sum_loss"]) - 13 * float(g["mean_loss"])) < 1e-13
    assert small(g["sum_vs_mean_grad"])
    assert round(g["mean_rates"]["FCN-32s"], 10) == 1.875e-5
    assert small(g["torch_diff"])


def max_diff_of(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


@pytest.mark.slow                       # a whole-network gradient check: ~5 s on 2 cores
def test_lesson_06_fcn8s(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("06_fcn8s", tmp_path, monkeypatch, capsys)
    model = g["model"]
    assert g["crops"] == g["model_crops"] == {"score_pool4": 5, "score_pool3": 9,
                                              "upscore8": 31}
    assert g["summary_crops"] == {"crop_pool4": 5, "crop_pool3": 9, "crop_output": 31}
    assert (model.crop_pool4.offset, model.crop_pool3.offset,
            model.crop_output.offset) == ((5, 5), (9, 9), (31, 31))
    assert g["smallest"] == {1: 193, 100: 1}
    assert g["with_padding_1"].offset == -68 and "negative offset -68" in g["padding_1_error"]
    assert g["same_as_forward"] and "written out == model.forward(x): True" in out
    for name, shape in g["shapes"].items():
        assert g["summary_shapes"][name] == shape, name
    assert g["shapes"]["crop_output"] == (1, 3, 32, 40)
    assert g["dx"].shape == g["x"].shape and g["grads"]["upscore8.weight"] is None
    report = g["report"]
    assert report.passed and len(report.tensors) == 37          # the input and 36 tensors
    assert not g["at_kink"].passed and g["at_kink"].failures() == ["0.bias"]
    assert g["torch_diff"] < 1e-12


def test_lesson_07_your_layer(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("07_your_layer", tmp_path, monkeypatch, capsys)
    assert g["report"].passed and "gradcheck depthwise conv: passed" in out
    assert g["torch_diff"] < 1e-12 and g["grouped_diff"] < 1e-12
    caught = g["caught"]
    assert caught.failures() == ["weight"]                         # caught, and named
    assert g["worst"].n_failed == 24 and g["worst"].n_elements == 27
    assert g["right"] == [[0, 0, 0], [1, 1, 1], [2, 2, 2]]         # located: tap k = 4c
    assert g["correct_error"].max() < 1e-8


def test_lesson_08_classifier_to_segmenter(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("08_classifier_to_segmenter", tmp_path, monkeypatch, capsys)
    classify, logits = g["classify"], g["logits"]
    assert g["conv_logits"].shape == (1, 5, 1, 1)
    np.testing.assert_allclose(g["conv_logits"][:, :, 0, 0], logits, rtol=0, atol=1e-12)
    assert small(g["logits_diff"])
    fc1 = g["head"][0]                                  # weight (f, c, i, j) is m = c*49 + i*7 + j
    assert fc1.shape == (64, 16, 7, 7) and fc1[3, 2, 4, 5] == g["fc_w"][0][3, 2 * 49 + 4 * 7 + 5]
    assert g["wrong_diff"] > 0.1 and g["wrong_head"][0].shape == fc1.shape
    x_big, score_map = g["x_big"], g["score_map"]
    assert score_map.shape == (1, 5, 5, 7) and g["S"] == 8 and g["SIZE"] == 70
    assert sorted(g["cell_diffs"]) == sorted(g["cells"]) and len(g["cells"]) >= 3
    for (p, q), diff in g["cell_diffs"].items():        # the lesson's claim, and checked here
        assert small(diff), (p, q)
        crop = x_big[:, :, 8 * p:8 * p + 70, 8 * q:8 * q + 70]
        np.testing.assert_allclose(score_map[:, :, p, q], classify(crop), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(g["labels"], score_map[0].argmax(axis=0))
    assert small(g["padded_logits_diff"]) and g["padded_cell_diff"] > 0.1
    assert g["fc6_is_reshape"] and g["fc7_is_reshape"]
    assert "score_fr 16x16" in out and "all zero: True" in out
    assert g["torch_diff"] is None or g["torch_diff"] < 1e-12


def test_lesson_09_dilation_aspp(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("09_dilation_aspp", tmp_path, monkeypatch, capsys)
    x9, w3 = g["x9"], g["w3"]
    for d in (2, 3):                                    # tap (i, j) at (iD, jD), zeros between
        big = g["stuffed"][d]
        assert big.shape == (3, 2, 2 * d + 1, 2 * d + 1)
        np.testing.assert_array_equal(big[:, :, ::d, ::d], w3)
        assert np.count_nonzero(big) == w3.size
        dilated = ops.conv2d_forward(x9, w3, padding=d, dilation=d)[0]
        np.testing.assert_allclose(ops.conv2d_forward(x9, big, padding=d)[0], dilated,
                                   rtol=0, atol=1e-12)
        assert small(g["stuffed_diff"][d])
    assert g["fields"] == {(1, 1, 1): 7, (1, 2, 4): 15}
    assert g["sizes_os8"] == [260, 130, 65, 65, 65] and g["sizes_os32"][-1] == 17
    assert g["backbone_maps"] == {(False, True, True): (9, 9), (False, False, False): (3, 3)}
    assert g["block_dilations"] == {"layer3": [1, 2, 2, 2, 2, 2], "layer4": [2, 4, 4]}
    p = np.arange(65)
    for r in (12, 24, 36):                              # taps inside, per axis, outer product
        along = 1 + (p >= r) + (p <= 64 - r)
        np.testing.assert_array_equal(g["taps"][r], np.outer(along, along))
    assert g["taps"][36][32, 32] == 1 and not (g["taps"][36] == 9).any()
    assert (g["taps"][36] == 1).sum() == 49 and g["taps"][36].mean() < 4
    assert small(g["centre_diff"]) and small(g["pool_spread"]) and small(g["pool_branch_diff"])
    assert g["joined"].shape == (1, 10, 65, 65) and g["aspp_out"].shape == (1, 2, 65, 65)


def test_lesson_10_groups_batch_norm(tmp_path, monkeypatch, capsys):
    g, out = run_lesson("10_groups_batch_norm", tmp_path, monkeypatch, capsys)
    D, P = g["D"], g["P"]
    np.testing.assert_allclose(g["W_full"], np.einsum("fc,cij->fcij", P[:, :, 0, 0], D[:, 0]),
                               rtol=0, atol=0)
    assert small(g["separable_diff"])
    assert g["counts"][(256, 256)] == (589_824, 67_840)
    assert all(small(diff) for diff in g["grouped_diffs"])
    x = g["x_bn"]
    biased, unbiased = x.var(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(g["var_unbiased"], unbiased, rtol=1e-14)
    np.testing.assert_allclose(g["running_var_1"], 0.9 + 0.1 * unbiased, rtol=1e-14)
    assert small(g["running_unbiased_diff"]) and g["running_biased_diff"] > 1e-3
    x_hat = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(biased + 1e-5)[:, None, None]
    np.testing.assert_allclose(g["x_hat"], x_hat, rtol=0, atol=1e-12)
    np.testing.assert_allclose(g["eval_ratio"].mean(axis=(0, 2, 3)),
                               np.sqrt((biased + 1e-5) / (unbiased + 1e-5)), rtol=1e-9)
    assert small(g["formula_diff"]) and np.abs(g["dx_sums"]).max() < 1e-12
    np.testing.assert_allclose(g["dx_dot_xhat"], g["eps_term"], rtol=1e-8)
    assert g["report"].passed and g["naive"].failures() == ["x"]
    assert g["torch_diff"] is None or g["torch_diff"] < 1e-12
    assert g["down"][-1] == 32 and g["up"] == [28, 56, 52, 104, 100, 200, 196, 392, 388]
    assert "unet_sizes.output_size(572, depth=4) = 388" in out
    assert "492 or 508" in g["size_error"] and g["unet_out"].shape[2:] == (20, 36)
    assert "60 or 64" in g["unet_error"]


def test_a_lesson_without_pytorch_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)                 # import torch fails
    g, out = run_lesson("02_conv_transpose", tmp_path, monkeypatch, capsys)
    assert "PyTorch is not installed" in out and g["torch_diff"] is None
    assert "C^T z == conv_transpose2d(z): True" in out


def test_out_argument_names_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["01_im2col.py", "--out", str(tmp_path / "mine")])
    monkeypatch.syspath_prepend(str(LESSONS))
    import _common
    assert _common.output_dir("01") == tmp_path / "mine" and (tmp_path / "mine").is_dir()
