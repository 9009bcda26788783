"""State_dict keys from names: how `name:` turns into the key segments of a layer's tensors.

The rule (README, "Weights and state_dict keys"):
1. A layer's key is its parent's key followed by its own segment: its `name` if it has one (written as it
   is, so `downsample.0` is two segments), otherwise its position in its list. Inside a residual,
   concat or other composite with named branches the branch name comes first (`5.body.2`); a branch
   written as one entry instead of a list adds no position (`branch1.conv`).
2. A composite without a name whose branches hold named entries adds nothing to their keys: those
   named entries sit beside the layers of the block around it, as a torchvision module's attributes
   do (`layer1.0.conv1` and `layer1.0.downsample.0` of a Bottleneck written as a residual).
3. A tensor's key is its layer's key, a dot and the tensor's name (`layer1.0.conv1.weight`), except for
   a layer that is a learned tensor itself (class token, position embedding, layer scale): its name
   names the tensor (`features.1.0.layer_scale`).
4. The copies of an unnamed `repeat` take the positions of the list it stands in, and the entries after
   it count on from its last copy (`repeat: 0` takes none): torchvision's flat
   `nn.Sequential(first, *[block] * (n - 1))` gives `layer1.1.conv1`, where the path is `4.1.0...`. A
   named repeat is its copies' namespace (`layer1.0`, `layer1.1`); each copy is one of its own.
5. `{i}` in a name stands for the entry's position in its list; in a repeat's name, for each copy's
   position, the copies then numbered in the list as in rule 4 but each named: after `block2-0`,
   `{block: ..., repeat: 2, name: "block2-{i}"}` gives `block2-1` and `block2-2` (torchvision's
   RegNet names a stage's blocks so).
A spec without names or repeats gets its positional paths as keys, so `path` and `key` agree.

>>> from cnncalc.spec import parse
>>> net = parse("input: 3x8x8\\nlayers:\\n  - conv2d: {out_channels: 4, kernel_size: 3}\\n    name: conv1\\n"
...             "  - residual:\\n      body:\\n        - conv2d: {out_channels: 4, kernel_size: 1}\\n"
...             "          name: conv2\\n        - relu\\n")
>>> [(n.path, n.key) for n in net.nodes()]
[('0', 'conv1'), ('1', '1'), ('1.body.0', 'conv2'), ('1.body.1', '1.body.1')]
"""
from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from .errors import SpecError

if TYPE_CHECKING:  # pragma: no cover
    from .analysis import Row
    from .spec import Node


MAX_KEY = 500  # characters names may add to a key beyond its path's length (torchvision's keys have < 80)


def assign(root: "Node") -> None:
    """Set `key` on every node below `root` (the network's top-level Sequential, key "").

    A key more than MAX_KEY characters longer than its path is refused before it is made: names shared
    through YAML aliases cost nothing in the file, but every key spells out all the names above it.
    """
    # (node, its key, where its unnamed composites put their named entries, its list's namespace and first
    # position): a flat repeat numbers its copies in the list around it, from its own position (rule 4)
    stack = [(root, "", "", "", 0)]
    while stack:
        node, key, home, namespace, first = stack.pop()
        if len(key) > len(node.path) + MAX_KEY:
            raise SpecError(f"the names on its path would make its state_dict key more than {MAX_KEY} characters "
                            "longer than the path itself",
                            where=node.where, layer=node.describe(),
                            fix="use shorter names: every name above a layer is a segment of its key")
        node.key = key
        if node.leaf:
            continue
        # An unnamed composite with named entries in its branches is no namespace for them (rule 2).
        through = node.name is None and any(c.name is not None for nodes in node.branches.values() for c in nodes)
        copies = node.kind == "repeat"
        template = node.name if copies and _numbered(node) else None  # names each copy (rule 5)
        pushed = []
        for branch, nodes in node.branches.items():
            inner = _join(key, branch) if branch else namespace    # a list is its parent's namespace itself
            attach = home if through and branch else inner
            position = first if not branch else 0
            for child in nodes:
                if template is not None:
                    child_key = _join(home, _named(template, position, child))
                elif child.name is not None:
                    child_key = _join(attach, _named(child.name, position, child))
                else:
                    child_key = inner if child.single else _join(inner, str(position))
                flat = _flat(child)
                # a repeat's copy is a namespace of its own; a flat repeat's copies continue this list
                pushed.append((child, child_key, child_key if copies else attach,
                               inner if flat else child_key, 0 if child.single or not flat else position))
                position += len(child.branches[""]) if flat else 1
        stack.extend(reversed(pushed))   # popped in document order


def _flat(node: "Node") -> bool:
    """An unnamed repeat, or one whose name numbers its copies (in a list, not a branch of its own): its
    copies take the positions of the list around it, as torchvision's `nn.Sequential(first, *[block] *
    (n - 1))` numbers them."""
    return node.kind == "repeat" and (node.name is None or _numbered(node)) and not node.single


def _numbered(node: "Node") -> bool:
    """Whether the entry's name holds the position placeholder `{i}` (rule 5)."""
    return node.name is not None and "{i}" in node.name


def _named(name: str, position: int, node: "Node") -> str:
    """A name as a key segment: `{i}` replaced by the position, cut to what is enough to refuse it."""
    return name.replace("{i}", str(position))[:len(node.path) + MAX_KEY + 1]


def _join(key: str, segment: str) -> str:
    return f"{key}.{segment}" if key and segment else key or segment


def tensor_key(node: "Node", tensor: str) -> str:
    """The state_dict key of one of a leaf's tensors (rule 3)."""
    if node.name is not None and node.layer.learned_tensor:
        return node.key
    return _join(node.key, tensor)


def positional_key(node: "Node", tensor: str) -> str:
    """The key of the equivalent torch.nn.Sequential model: the layer's path, a dot, the tensor's name."""
    return _join(node.path, tensor)


def clashes(rows: "list[Row]") -> list[tuple[str, "Node", "Node"]]:
    """(key, first layer, second layer) for every tensor key two layers would both load."""
    owner, found = {}, []
    for row in rows:
        if not row.leaf:
            continue
        for tensor in row.node.layer.tensors(row.input) | row.node.layer.buffers(row.input):
            key = tensor_key(row.node, tensor)
            first = owner.setdefault(key, row.node)
            if first is not row.node:
                found.append((key, first, row.node))
    return found


def clash_error(key: str, first: "Node", second: "Node") -> SpecError:
    return SpecError(f"two layers would load the same state_dict key '{key}': {first.describe()} at "
                     f"{first.where} and {second.describe()}", where=second.where, layer=second.describe(),
                     fix="give them different names (a name is its layer's key segment; see the README, "
                         "\"Weights and state_dict keys\")")


# --- loading a state_dict -----------------------------------------------------------------------------

IGNORED_SUFFIXES = (".num_batches_tracked",)
_KEYS_FIX = ("a file's keys are the layers' keys (`cnncalc summary --format json` lists each layer's \"key\", "
             "made from its names as the README's \"Weights and state_dict keys\" says) or their positional "
             "paths (a torch.nn.Sequential's state_dict)")


def match(rows: "list[Row]", shapes: dict, what: str) -> tuple[dict[str, str], list[str]]:
    """Which key of a state_dict holds each tensor the network needs; (wanted -> file key, warnings).

    `shapes` maps the file's keys to their shapes; wanted tensors are named `<path>.<tensor>`. The file
    is read by the layers' keys or, if more of its keys are positional, by their paths (so a
    torch.nn.Sequential's state_dict loads into a spec with names). A missing or misshapen tensor is a
    SpecError naming the key, both shapes and the closest key in the file; unused keys are warnings.
    """
    wanted = [(row, tensor, tuple(shape)) for row in rows if row.leaf
              for tensor, shape in {**row.node.layer.tensors(row.input), **row.node.layer.buffers(row.input)}.items()]
    named = [tensor_key(row.node, tensor) for row, tensor, _ in wanted]
    positional = [positional_key(row.node, tensor) for row, tensor, _ in wanted]
    by_names = sum(k in shapes for k in named) >= sum(k in shapes for k in positional)
    if by_names:
        for key, first, second in clashes(rows):
            raise clash_error(key, first, second)
    chosen = named if by_names else positional
    expected = set(chosen)
    found = {}
    for (row, tensor, shape), key in zip(wanted, chosen):
        node = row.node
        if key not in shapes:
            raise SpecError(f"{what} has no '{key}' (expected shape {_shape(shape)}, found none)"
                            f"{_closest(key, shapes, expected)}", where=node.where, layer=node.describe(),
                            fix=_KEYS_FIX)
        if tuple(shapes[key]) != shape:
            raise SpecError(f"'{key}' in {what} has shape {_shape(shapes[key])}, expected {_shape(shape)}"
                            f"{_closest(key, shapes, expected, shape)}", where=node.where,
                            layer=node.describe(), fix="the weights belong to a different network, or the spec's "
                                                       "input or channels differ from the model that saved them")
        found[positional_key(node, tensor)] = key
    unused = [k for k in shapes if k not in expected and not k.endswith(IGNORED_SUFFIXES)]
    warnings = [f"{what}: {len(unused)} unused key{'s' if len(unused) > 1 else ''}: "
                + ", ".join(f"{k} ({_shape(shapes[k])})" for k in unused[:8]) + (", …" if len(unused) > 8 else "")
                ] if unused else []
    return found, warnings


def _closest(key: str, shapes: dict, expected: set, shape: tuple | None = None) -> str:
    """`; closest unused key: 'x' (shape)`: among the file's keys no layer takes, the most similar name
    (with the wanted shape first, when one is given)."""
    spare = [k for k in shapes if k not in expected and not k.endswith(IGNORED_SUFFIXES)]
    if shape is not None:
        spare = [k for k in spare if tuple(shapes[k]) == shape] or spare
    if len(spare) > 5000:  # bounded work for a huge file: keys ending like this one
        spare = [k for k in spare if k.rpartition(".")[2] == key.rpartition(".")[2]][:5000]
    close = difflib.get_close_matches(key, spare, n=1, cutoff=0.3)
    if not close:
        return "; no unused key in the file is close to it"
    return f"; closest unused key: '{close[0]}' ({_shape(shapes[close[0]])})"


def _shape(shape) -> str:
    return "×".join(str(n) for n in shape) if len(shape) else "a scalar"
