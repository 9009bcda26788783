"""State_dict keys from names (cnncalc.keys): the rule, torchvision's own key lists, loading by either key.

The truth for the built-ins is torchvision's state_dict as recorded in tests/data/torchvision/ (keys and
shapes, in order, num_batches_tracked left out): every built-in that torchvision has gives exactly
those keys from its names. Loading is checked both ways: a file keyed by names and one keyed by
positional paths (a torch.nn.Sequential's state_dict) load the same weights.
"""
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cnncalc
from cnncalc import forward as fw
from cnncalc import keys
from cnncalc.errors import SpecError
from cnncalc.spec import builtin_names
import torch_model
from util import analyse, cli

DATA = Path(__file__).resolve().parent / "data" / "torchvision"


def keyed(report) -> list[tuple[str, list]]:
    """(state_dict key, shape) of every tensor, in torch's order: per layer its own parameters, then its
    own buffers, then its submodules' tensors (Swin's attention: relative_position_bias_table and
    relative_position_index before qkv.weight)."""
    def ordered(layer, shape):
        tensors, buffers = layer.tensors(shape), layer.buffers(shape)
        both = {**tensors, **buffers}
        own = [t for t in tensors if "." not in t] + [b for b in buffers if "." not in b]
        return [(t, both[t]) for t in own] + [(t, s) for t, s in both.items() if "." in t]
    return [(keys.tensor_key(row.node, t), list(s)) for row in report.rows if row.leaf
            for t, s in ordered(row.node.layer, row.input)]


def net_keys(text: str) -> dict[str, str]:
    return {row.path: row.node.key for row in analyse(text).rows}


TORCHVISION_BUILTINS = sorted(p.stem for p in DATA.glob("*.json") if p.stem in builtin_names())


def test_the_builtins_torchvision_has_are_checked():
    assert {"alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2"} <= set(TORCHVISION_BUILTINS)


@pytest.mark.parametrize("name", TORCHVISION_BUILTINS)
def test_builtin_keys_are_torchvisions_own(name):
    """Same keys, same shapes, same order as torchvision's state_dict (num_batches_tracked aside).

    The order differs in one way only: torchvision lists a module's own learned tensors before its
    submodules' (CNBlock's layer_scale before its block, VisionTransformer's class_token before
    conv_proj), a spec where the forward pass uses them."""
    theirs = [(key, shape) for key, shape, _ in json.loads((DATA / f"{name}.json").read_text())["state_dict"]]
    report = cnncalc.analyse(cnncalc.load(name))
    ours = keyed(report)
    assert sorted(ours) == sorted(theirs)
    learned = {keys.tensor_key(row.node, t) for row in report.rows if row.leaf and row.node.layer.learned_tensor
               for t in row.node.layer.tensors(row.input)}
    assert [k for k in ours if k[0] not in learned] == [k for k in theirs if k[0] not in learned]
    assert not [w.text for w in report.warnings if "state_dict key" in w.text]


# Other torchvision families written as specs with torchvision's attribute names (tests/specs/); wide
# resnet and mnasnet write a stage's later blocks with `repeat`. RegNet's order differs in one way:
# torchvision registers a block's `proj` (our residual's shortcut) before its `f` (the body).
FAMILIES = ["densenet121", "squeezenet1_0", "wide_resnet50_2", "mnasnet1_0", "regnet_y_400mf"]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_specs_get_torchvisions_keys_params_and_macs(name):
    reference = json.loads((DATA / f"{name}.json").read_text())
    report = cnncalc.analyse(cnncalc.load(str(Path(__file__).resolve().parent / "specs" / f"{name}.yaml")))
    theirs = [(key, shape) for key, shape, _ in reference["state_dict"]]
    assert (sorted(keyed(report)) if name.startswith("regnet") else keyed(report)) == \
           (sorted(theirs) if name.startswith("regnet") else theirs)
    assert not [w.text for w in report.warnings if "state_dict key" in w.text]
    assert (report.totals.params, report.totals.macs) == (reference["params"], reference["macs"])
    assert list(report.output) == reference["output"]


# --- the rule -----------------------------------------------------------------------------------------

def test_without_names_keys_are_the_paths():
    spec = """
        input: 3x16x16
        layers:
          - conv2d: {out_channels: 4, kernel_size: 3, padding: 1}
          - residual:
              body: [{conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}, batchnorm2d]
              shortcut: [{conv2d: {out_channels: 4, kernel_size: 1}}]
          - concat: {b1: [{conv2d: {out_channels: 2, kernel_size: 1}}], b2: []}
          - sequential: [relu, {conv2d: {out_channels: 3, kernel_size: 1}}]
    """
    assert all(path == key for path, key in net_keys(spec).items())


def test_an_unnamed_repeat_numbers_its_copies_in_the_list_around_it():
    """torchvision's `nn.Sequential(first, *[block] * (n - 1))`: copies take the positions of the list they
    stand in (layer1.1, layer1.2, not layer1.1.0), later entries count on after them, `repeat: 0` takes
    none; paths keep the nesting. A named repeat is a namespace of its own (layer2.0, layer2.1)."""
    spec = """
        input: 3x8x8
        layers:
          - conv2d: {out_channels: 4, kernel_size: 1}
          - sequential: [relu, {conv2d: {out_channels: 4, kernel_size: 1}}]
            repeat: 2
          - conv2d: {out_channels: 4, kernel_size: 1}
            repeat: 0
          - conv2d: {out_channels: 4, kernel_size: 1}
          - name: layer2
            conv2d: {out_channels: 4, kernel_size: 1}
            repeat: 2
    """
    assert net_keys(spec) == {
        "0": "0", "1": "1", "1.0": "1", "1.0.0": "1.0", "1.0.1": "1.1", "1.1": "2", "1.1.0": "2.0",
        "1.1.1": "2.1", "2": "3", "3": "3", "4": "layer2", "4.0": "layer2.0", "4.1": "layer2.1"}


def test_a_numbered_name_names_each_copy_of_a_repeat_by_its_position():
    """torchvision's RegNet: a stage's blocks are `block2-0`, `block2-1`, ... (rule 5)."""
    spec = """
        input: 2x6x6
        blocks:
          unit:
            layers:
              - conv2d: {out_channels: 2, kernel_size: 1}
                name: conv
        layers:
          - name: block2
            sequential:
              - unit: {}
                name: block2-0
              - unit: {}
                repeat: 2
                name: "block2-{i}"
              - {conv2d: {out_channels: 2, kernel_size: 1}}
              - unit: {}
                repeat: 0
                name: "never-{i}"
              - {conv2d: {out_channels: 2, kernel_size: 1}, name: "last{i}"}
    """
    report = analyse(spec)
    assert [key for key, _ in keyed(report)] == [
        f"block2.{segment}.{tensor}" for segment in ("block2-0.conv", "block2-1.conv", "block2-2.conv", "3", "last4")
        for tensor in ("weight", "bias")]
    paths = {row.path: row.node.key for row in report.rows}
    assert (paths["0.1"], paths["0.1.0"], paths["0.1.1"], paths["0.1.1.0"]) == \
        ("block2.block2-1", "block2.block2-1", "block2.block2-2", "block2.block2-2.conv")
    assert torch_model.disagreements(textwrap.dedent(spec)) == []


def test_a_stage_of_repeated_bottlenecks_gets_torchvisions_keys_and_loads_either_way(tmp_path):
    """wide_resnet50_2's stage is `[bottleneck_down, {bottleneck, repeat: n - 1}]`: its keys are
    torchvision's flat layer1.1.conv1 (tests/data/torchvision), and the same weights load by those keys and
    by the nested positional paths (1.0.1.0.0.body.0) alike."""
    path = Path(__file__).resolve().parent / "specs" / "wide_resnet50_2.yaml"
    net = cnncalc.load(str(path), "3x32x32")
    report = cnncalc.analyse(net)
    rows = {row.node.key: row.path for row in report.rows if row.node.name == "conv1"}
    assert (rows["layer1.1.conv1"], rows["layer1.2.conv1"], rows["layer3.5.conv1"]) == \
           ("4.1.0.0.body.0", "4.1.1.0.body.0", "6.1.4.0.body.0")
    positional = fw.initial_weights(report, seed=2)
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    a, b = fw.run(net, weights=positional, data=x), fw.run(net, weights=renamed(report, positional), data=x)
    assert np.array_equal(a.output, b.output) and not a.warnings and not b.warnings


def test_a_name_replaces_the_position_and_may_hold_dots():
    spec = """
        input: 3x16x16
        layers:
          - conv2d: {out_channels: 4, kernel_size: 3}
            name: stem.conv
          - relu
          - name: head
            sequential: [flatten, {linear: {out_features: 10}}]
    """
    assert net_keys(spec) == {"0": "stem.conv", "1": "1", "2": "head", "2.0": "head.0", "2.1": "head.1"}


BOTTLENECK = """
    input: 8x8x8
    blocks:
      block:
        layers:
          - residual:
              body:
                - conv2d: {out_channels: 16, kernel_size: 1, bias: false}
                  name: conv1
                - batchnorm2d
                - relu
              shortcut:
                - conv2d: {out_channels: 16, kernel_size: 1, bias: false}
                  name: downsample.0
          - relu
    layers:
      - name: layer1
        block: {}
        repeat: 2
"""


def test_an_unnamed_residual_adds_nothing_to_the_keys_of_its_named_layers():
    """A Bottleneck's layers sit in one namespace (layer1.0.conv1, layer1.0.downsample.0); an unnamed
    layer in a branch keeps its positional segments; a second copy's shortcut must take 16 channels."""
    spec = BOTTLENECK.replace("input: 8x8x8", "input: 16x8x8")
    assert net_keys(spec) == {
        "0": "layer1", "0.0": "layer1.0", "0.0.0": "layer1.0.0", "0.0.0.body.0": "layer1.0.conv1",
        "0.0.0.body.1": "layer1.0.0.body.1", "0.0.0.body.2": "layer1.0.0.body.2",
        "0.0.0.shortcut.0": "layer1.0.downsample.0", "0.0.1": "layer1.0.1",
        "0.1": "layer1.1", "0.1.0": "layer1.1.0", "0.1.0.body.0": "layer1.1.conv1",
        "0.1.0.body.1": "layer1.1.0.body.1", "0.1.0.body.2": "layer1.1.0.body.2",
        "0.1.0.shortcut.0": "layer1.1.downsample.0", "0.1.1": "layer1.1.1"}


def test_a_named_composite_keeps_its_branch_names_and_a_single_entry_branch_has_no_position():
    """googlenet's inception3a.branch1.conv (a module held directly) and inception3a.branch2.0.conv (a
    Sequential of two)."""
    spec = """
        input: 8x8x8
        blocks:
          basic:
            args: {out: 4, k: 1}
            layers:
              - conv2d: {out_channels: $out, kernel_size: $k, padding: ($k - 1) // 2, bias: false}
                name: conv
              - batchnorm2d: {}
                name: bn
              - relu
        layers:
          - name: inception3a
            concat:
              branch1: {basic: {out: 4}}
              branch2: [{basic: {out: 2}}, {basic: {out: 4, k: 3}}]
    """
    report = analyse(spec)
    tensors = [key for key, _ in keyed(report)]
    assert tensors == ["inception3a.branch1.conv.weight", "inception3a.branch1.bn.weight",
                       "inception3a.branch1.bn.bias", "inception3a.branch1.bn.running_mean",
                       "inception3a.branch1.bn.running_var",
                       "inception3a.branch2.0.conv.weight", "inception3a.branch2.0.bn.weight",
                       "inception3a.branch2.0.bn.bias", "inception3a.branch2.0.bn.running_mean",
                       "inception3a.branch2.0.bn.running_var",
                       "inception3a.branch2.1.conv.weight", "inception3a.branch2.1.bn.weight",
                       "inception3a.branch2.1.bn.bias", "inception3a.branch2.1.bn.running_mean",
                       "inception3a.branch2.1.bn.running_var"]
    # The single entry's path keeps its position: paths are positional, as the contract fixes.
    assert [r.path for r in report.rows if r.node.kind == "basic"] == ["0.branch1.0", "0.branch2.0", "0.branch2.1"]
    assert report.output == (8, 8, 8)


def test_a_single_entry_branch_is_the_same_network_for_pytorch():
    text = textwrap.dedent("""
        input: 3x9x9
        layers:
          - concat:
              a: {conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}
              b: [{conv2d: {out_channels: 2, kernel_size: 1}}, relu]
          - residual:
              body: {conv2d: {out_channels: 6, kernel_size: 3, padding: 1}, name: conv}
              shortcut: relu
    """)
    assert torch_model.disagreements(text) == []


def test_nested_unnamed_concats_put_named_branches_in_the_block():
    """inception_v3's InceptionE: branch3x3_1 then the concatenation of branch3x3_2a and _2b, all keyed
    in the block (Mixed_7b.branch3x3_2a.conv)."""
    spec = """
        input: 8x5x5
        blocks:
          inception_e:
            layers:
              - concat:
                  b1:
                    - conv2d: {out_channels: 4, kernel_size: 1}
                      name: branch1x1
                  b2:
                    - conv2d: {out_channels: 4, kernel_size: 1}
                      name: branch3x3_1
                    - concat:
                        a: [{conv2d: {out_channels: 2, kernel_size: [1, 3], padding: [0, 1]}, name: branch3x3_2a}]
                        b: [{conv2d: {out_channels: 2, kernel_size: [3, 1], padding: [1, 0]}, name: branch3x3_2b}]
        layers:
          - inception_e: {}
            name: Mixed_7b
    """
    assert [key for key, _ in keyed(analyse(spec))] == [
        "Mixed_7b.branch1x1.weight", "Mixed_7b.branch1x1.bias", "Mixed_7b.branch3x3_1.weight",
        "Mixed_7b.branch3x3_1.bias", "Mixed_7b.branch3x3_2a.weight", "Mixed_7b.branch3x3_2a.bias",
        "Mixed_7b.branch3x3_2b.weight", "Mixed_7b.branch3x3_2b.bias"]


def test_summary_json_shows_the_key_beside_the_positional_path():
    result = cli("summary", "resnet50", "--format", "json")
    rows = {row["path"]: row for row in json.loads(result.stdout)["layers"]}
    assert (rows["6.5.0.body.6"]["key"], rows["6.5.0.body.6"]["name"]) == ("layer3.5.conv3", "conv3")
    assert rows["7.0.0.shortcut.1"]["key"] == "layer4.0.downsample.1"
    assert rows["10"]["key"] == "fc" and rows["2"]["key"] == "2"


DUPLICATE = """
    input: 3x8x8
    layers:
      - conv2d: {out_channels: 4, kernel_size: 3}
        name: conv
      - relu
      - conv2d: {out_channels: 4, kernel_size: 3}
        name: conv
"""


def test_two_layers_with_one_key_warn_in_summary_and_cannot_load_by_names(tmp_path):
    report = analyse(DUPLICATE)
    assert [w.text for w in report.warnings] == [
        "its state_dict key 'conv.weight' is also that of layer 0 (conv2d 'conv'): weights cannot load by "
        "these names; give the layers different names",
        "its state_dict key 'conv.bias' is also that of layer 0 (conv2d 'conv'): weights cannot load by these "
        "names; give the layers different names"]
    named = {"conv.weight": np.zeros((4, 3, 3, 3), np.float32), "conv.bias": np.zeros(4, np.float32)}
    with pytest.raises(SpecError) as e:
        fw.run(report.network, weights=named)
    message = str(e.value)
    assert "two layers would load the same state_dict key 'conv.weight'" in message
    assert "layer 0 (conv2d 'conv') at test.yaml:4:5" in message and "layer 2 (conv2d 'conv')" in message
    # By positional paths they load.
    state = fw.initial_weights(report, seed=3)
    assert fw.run(report.network, weights=state).output.shape == (1, 4, 4, 4)


# --- loading by names or by paths ---------------------------------------------------------------------

def renamed(report, weights: dict) -> dict:
    """A positional state (`<path>.<tensor>`) keyed by the layers' keys instead."""
    by_path = {keys.positional_key(row.node, t): keys.tensor_key(row.node, t) for row in report.rows if row.leaf
               for t in {**row.node.layer.tensors(row.input), **row.node.layer.buffers(row.input)}}
    return {by_path[k]: v for k, v in weights.items()}


def test_lenet5_loads_a_sequential_state_dict_and_a_named_one_alike(tmp_path):
    net = cnncalc.load("lenet5")
    report = cnncalc.analyse(net)
    positional = fw.initial_weights(report, seed=4)
    assert "0.weight" in positional
    named = renamed(report, positional)
    assert sorted(named)[:2] == ["3.bias", "3.weight"] and "conv1.weight" in named
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "p.npz", **positional)
    np.savez(tmp_path / "n.npz", **named)
    a = fw.run(net, weights=str(tmp_path / "p.npz"), data=x)
    b = fw.run(net, weights=str(tmp_path / "n.npz"), data=x)
    assert np.array_equal(a.output, b.output) and not a.warnings and not b.warnings


def test_cli_forward_loads_torchvision_keys_and_names_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # short file names in the messages
    net = cnncalc.load("resnet18")
    report = cnncalc.analyse(net)
    state = renamed(report, fw.initial_weights(report, seed=1))
    state["layer1.0.bn1.num_batches_tracked"] = np.array(0)
    np.savez(tmp_path / "tv.npz", **state)
    ok = cli("forward", "resnet18", "--weights", "tv.npz", "--input", "3x32x32")
    assert ok.exit_code == 0, ok.output
    assert "unused" not in ok.output

    missing = dict(state)
    missing["layer3.1.conv2.wieght"] = missing.pop("layer3.1.conv2.weight")
    np.savez(tmp_path / "missing.npz", **missing)
    bad = cli("forward", "resnet18", "--weights", "missing.npz", "--input", "3x32x32")
    assert bad.exit_code == 2
    assert "has no 'layer3.1.conv2.weight' (expected shape 256×256×3×3, found none); closest unused key:" \
           " 'layer3.1.conv2.wieght' (256×256×3×3)" in bad.stderr
    assert "layer 6.1.0.body.3 (conv2d 'conv2')" in bad.stderr and "Traceback" not in bad.output

    wrong = dict(state)
    wrong["fc.weight"] = np.zeros((10, 512), np.float32)
    wrong["head.weight"] = np.zeros((1000, 512), np.float32)
    np.savez(tmp_path / "wrong.npz", **wrong)
    bad = cli("forward", "resnet18", "--weights", "wrong.npz", "--input", "3x32x32")
    assert bad.exit_code == 2
    assert "'fc.weight' in weights file" in bad.stderr and "has shape 10×512, expected 1000×512; closest " \
           "unused key: 'head.weight' (1000×512)" in bad.stderr


def test_extra_keys_are_warnings_with_their_shapes():
    net = cnncalc.parse(textwrap.dedent(DUPLICATE.replace("name: conv\n", "name: c2\n", 1)), "t.yaml")
    report = cnncalc.analyse(net)
    state = renamed(report, fw.initial_weights(report))
    state["AuxLogits.fc.weight"] = np.zeros((10, 7), np.float32)
    result = fw.run(net, weights=state)
    assert result.warnings == ["the weights: 1 unused key: AuxLogits.fc.weight (10×7)"]


def test_a_file_half_positional_is_read_by_the_scheme_most_of_its_keys_follow():
    net = cnncalc.load("resnet18", input_shape="3x32x32")
    positional = fw.initial_weights(cnncalc.analyse(net))
    positional["conv1.weight"] = positional.pop("0.weight")   # one named key among positional ones
    with pytest.raises(SpecError, match=r"has no '0.weight' \(expected shape 64×3×7×7, found none\); closest "
                                        r"unused key: 'conv1.weight' \(64×3×7×7\)"):
        fw.run(net, weights=positional)


def test_names_cannot_make_keys_without_bound(tmp_path):
    """A long name shared through a YAML alias costs nothing in the file, but every key spells out the
    names above it: 90 nested levels of one 100,000-character name would make gigabytes of keys."""
    lines, indent = ["input: 1x8x8", "layers:"], "  "
    for depth in range(90):
        lines += [f"{indent}- name: {'&n ' + 'x' * 100_000 if depth == 0 else '*n'}", f"{indent}  sequential:"]
        indent += "    "
    lines.append(f"{indent}- relu")
    spec = tmp_path / "names.yaml"
    spec.write_text("\n".join(lines) + "\n")
    result = cli("summary", str(spec))
    assert result.exit_code == 2
    assert f"{spec}:3:5: error: layer 0 (sequential 'xxx" in result.stderr
    assert "the names on its path would make its state_dict key more than 500 characters longer than the path " \
           "itself" in result.stderr and "use shorter names" in result.stderr
    assert analyse("input: 4\nlayers:\n  - {linear: {out_features: 2}, name: " + "a" * 490 + "}\n").rows[0].node.key \
        == "a" * 490


def test_swin_relative_position_index_loads_as_torchvision_saves_it_and_is_checked(tmp_path):
    """torchvision saves each window attention's relative_position_index as an int64 buffer: it loads
    (from .npz and .safetensors, by torchvision's keys), and since it follows from the window size a file
    holding another index is refused, naming the key, instead of silently giving another output."""
    safetensors = pytest.importorskip("safetensors.numpy")
    net = cnncalc.load("swin_t", "3x64x64")
    report = cnncalc.analyse(net)
    state = renamed(report, fw.initial_weights(report, seed=3))
    index = "features.1.0.attn.relative_position_index"
    state = {k: v.astype(np.int64) if k.endswith("relative_position_index") else v for k, v in state.items()}
    assert state[index].dtype == np.int64 and state[index].shape == (49 * 49,)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "tv.npz", **state)
    safetensors.save_file(state, str(tmp_path / "tv.safetensors"))
    a = fw.run(net, weights=str(tmp_path / "tv.npz"), data=x)
    b = fw.run(net, weights=str(tmp_path / "tv.safetensors"), data=x)
    assert a.ok and np.array_equal(a.output, b.output) and not a.warnings and not b.warnings
    state[index] = state[index][::-1].copy()
    np.savez(tmp_path / "other.npz", **state)
    bad = cli("forward", "swin_t", "--input", "3x64x64", "--weights", str(tmp_path / "other.npz"))
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert f"'{index}' in weights file" in bad.stderr and "which is not learned" in bad.stderr
    assert "fix:" in bad.stderr
