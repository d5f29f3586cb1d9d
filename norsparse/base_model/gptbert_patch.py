"""Source patches for GPT-BERT (NorBERT4) remote code.

Two kinds of edit, both made on a copy of the model's own ``modeling_*.py``:

1. **The soft cap.** NorBERT4's masked-LM head ends in
   ``subword_prediction = 30 * torch.sigmoid(subword_prediction / 7.5)``: every
   logit is positive, so SPLADE's ``log1p(relu(x))`` never yields an exact zero.
   The statement is found with the ``ast`` module (an assignment ``X = A * f(Y / B)``
   with ``f`` a sigmoid or tanh, inside the masked-LM class's ``forward``) and
   rewritten to ``X = Y``: raw logits.
2. **transformers 5 compatibility.** The published code targets transformers 4:
   its non-persistent rotary buffers are left uninitialised by ``from_pretrained``
   (NaN logits), ``_tied_weights_keys`` is a list where a ``{target: source}``
   mapping is expected (``save_pretrained`` fails), and activation checkpointing
   uses ``use_reentrant=True`` (breaks under DDP). The first two are fixed in a
   clearly marked block appended to the file, the third in place.

Every edit is idempotent: patching a patched file changes nothing.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

CAP_MARKER = "norsparse patch: soft cap removed"
COMPAT_MARKER = "# --- norsparse patch: transformers 5 compatibility ---"
REENTRANT = re.compile(r"use_reentrant\s*=\s*True")
CAP_FUNCTIONS = {"sigmoid", "tanh"}


class PatchError(RuntimeError):
    """The model's code is not laid out as expected."""


@dataclass
class CodePatch:
    """What was found in and done to one modeling file."""

    file: str
    mlm_class: str
    soft_cap: str = "absent"  # absent | removed | already removed | kept
    cap_lines: list[str] = field(default_factory=list)
    tied_weights: dict[str, str] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "file": self.file, "mlm_class": self.mlm_class, "soft_cap": self.soft_cap,
            "cap_lines": self.cap_lines, "tied_weights": self.tied_weights, "applied": self.applied,
            "already_applied": self.already,
        }


def remote_mlm_class(folder: Path) -> tuple[Path, str] | None:
    """The modeling file and masked-LM class that ``config.json``'s ``auto_map`` names, if any."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    reference = (config.get("auto_map") or {}).get("AutoModelForMaskedLM")
    if not reference:
        return None
    if "--" in reference:  # "repo--module.Class": code in another repository
        raise PatchError(f"{folder}: auto_map points to code in another repository ({reference}); vendor it first")
    module, _, class_name = reference.rpartition(".")
    path = folder / f"{module}.py"
    if not path.exists():
        raise PatchError(f"{folder}: auto_map names {reference} but {path.name} is missing")
    return path, class_name


def _classes(tree: ast.Module) -> dict[str, ast.ClassDef]:
    return {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}


def _method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def _cap_parts(node: ast.stmt) -> tuple[str, ast.expr] | None:
    """For ``X = A * f(Y / B)`` (or ``f(Y / B) * A``) return ``("X", Y)``."""
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
        return None
    value = node.value
    if not (isinstance(value, ast.BinOp) and isinstance(value.op, ast.Mult)):
        return None
    for scale, call in ((value.left, value.right), (value.right, value.left)):
        if not (isinstance(scale, ast.Constant) and isinstance(scale.value, (int, float)) and isinstance(call, ast.Call)):
            continue
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name not in CAP_FUNCTIONS or len(call.args) != 1:
            continue
        inner = call.args[0]
        if isinstance(inner, ast.BinOp) and isinstance(inner.op, ast.Div) and isinstance(inner.right, ast.Constant):
            inner = inner.left
        return node.targets[0].id, inner
    return None


def find_soft_caps(source: str, class_name: str) -> list[ast.Assign]:
    """Soft-cap statements in ``class_name.forward`` (the class's own or an inherited one in the file)."""
    tree = ast.parse(source)
    classes = _classes(tree)
    seen = set()
    name = class_name
    while name in classes and name not in seen:
        seen.add(name)
        forward = _method(classes[name], "forward")
        if forward is not None:
            return [n for n in ast.walk(forward) if isinstance(n, ast.Assign) and _cap_parts(n)]
        bases = [b.id for b in classes[name].bases if isinstance(b, ast.Name)]
        name = bases[0] if bases else ""
    raise PatchError(f"class {class_name} with a forward method not found")


def remove_soft_caps(source: str, class_name: str) -> tuple[str, list[str]]:
    caps = find_soft_caps(source, class_name)
    lines = source.splitlines(keepends=True)
    removed = []
    for node in sorted(caps, key=lambda n: n.lineno, reverse=True):
        target, inner = _cap_parts(node)  # type: ignore[misc]
        original = "".join(lines[node.lineno - 1: node.end_lineno]).strip()
        indent = lines[node.lineno - 1][: len(lines[node.lineno - 1]) - len(lines[node.lineno - 1].lstrip())]
        replacement = ast.unparse(inner)
        if replacement == target:
            new = f"{indent}# {CAP_MARKER} (was: {original})\n"
        else:
            new = f"{indent}{target} = {replacement}  # {CAP_MARKER} (was: {original})\n"
        lines[node.lineno - 1: node.end_lineno] = [new]
        removed.append(original)
    return "".join(lines), list(reversed(removed))


def _pretrained_base(classes: dict[str, ast.ClassDef]) -> str:
    for name, cls in classes.items():
        if any(isinstance(b, (ast.Name, ast.Attribute)) and (getattr(b, "id", None) or getattr(b, "attr", None)) == "PreTrainedModel"
               for b in cls.bases):
            return name
    raise PatchError("no subclass of PreTrainedModel found")


def _non_persistent_buffer_classes(classes: dict[str, ast.ClassDef]) -> list[str]:
    found = []
    for name, cls in classes.items():
        init = _method(cls, "__init__")
        if init is None:
            continue
        for node in ast.walk(init):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register_buffer"
                    and any(k.arg == "persistent" and isinstance(k.value, ast.Constant) and k.value.value is False for k in node.keywords)):
                found.append(name)
                break
    return found


def _list_tied_keys(classes: dict[str, ast.ClassDef]) -> dict[str, list[str]]:
    found = {}
    for name, cls in classes.items():
        for node in cls.body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_tied_weights_keys" for t in node.targets)
                    and isinstance(node.value, ast.List)):
                found[name] = [ast.literal_eval(e) for e in node.value.elts]
    return found


def _input_embedding_weight(classes: dict[str, ast.ClassDef]) -> str | None:
    """``self.embedding.word_embedding`` in ``get_input_embeddings`` -> ``embedding.word_embedding.weight``."""
    for cls in classes.values():
        method = _method(cls, "get_input_embeddings")
        if method is None:
            continue
        for node in ast.walk(method):
            if isinstance(node, ast.Return) and node.value is not None:
                dotted = ast.unparse(node.value)
                if dotted.startswith("self."):
                    return dotted[len("self."):] + ".weight"
    return None


_SHIM = '''

{marker}
# Added by norsparse's `patch` stage; the code above is the model's own, apart from
# lines marked "norsparse patch". transformers 5 loads checkpoints on the meta device
# and leaves non-persistent buffers uninitialised: recompute them from the module's
# constructor arguments when transformers initialises the module.
def _norsparse_remember_init_args(cls):
    original_init = cls.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._norsparse_init_args = (args, kwargs)

    cls.__init__ = __init__


_NORSPARSE_BUFFER_CLASSES = ({buffer_classes},)
for _norsparse_cls in _NORSPARSE_BUFFER_CLASSES:
    _norsparse_remember_init_args(_norsparse_cls)

_norsparse_original_init_weights = {base}._init_weights


def _norsparse_init_weights(self, module):
    if isinstance(module, _NORSPARSE_BUFFER_CLASSES) and hasattr(module, "_norsparse_init_args"):
        args, kwargs = module._norsparse_init_args
        with torch.device("cpu"):
            fresh = type(module)(*args, **kwargs)
        for name in module._non_persistent_buffers_set:
            device = module._buffers[name].device
            module._buffers[name] = fresh._buffers[name].to(device)
        return
    return _norsparse_original_init_weights(self, module)


{base}._init_weights = _norsparse_init_weights
'''


def apply_compat(source: str, checkpoint_keys: set[str], report: CodePatch) -> str:
    tree = ast.parse(source)
    classes = _classes(tree)
    # 1. use_reentrant=True -> False
    if REENTRANT.search(source):
        source = REENTRANT.sub("use_reentrant=False", source)
        report.applied.append("gradient checkpointing with use_reentrant=False")
    # 2. list-valued _tied_weights_keys -> {target: source}
    tied_lists = _list_tied_keys(classes)
    if tied_lists:
        embedding = _input_embedding_weight(classes)
        lines = source.splitlines(keepends=True)
        for name, keys in tied_lists.items():
            mapping = {}
            for key in keys:
                if key in checkpoint_keys:
                    continue  # stored in the checkpoint: transformers 4 loaded it untied, so keep it untied
                if embedding is None:
                    raise PatchError(f"{name}._tied_weights_keys names {key}, which the checkpoint lacks, and no input embedding was found to tie it to")
                mapping[key] = embedding
            report.tied_weights.update(mapping)
            for node in classes[name].body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_tied_weights_keys" for t in node.targets):
                    indent = lines[node.lineno - 1][: len(lines[node.lineno - 1]) - len(lines[node.lineno - 1].lstrip())]
                    lines[node.lineno - 1: node.end_lineno] = [
                        f"{indent}_tied_weights_keys = {mapping!r}  # norsparse patch: was {keys!r}\n"
                    ] + [""] * (node.end_lineno - node.lineno)
        source = "".join(lines)
        report.applied.append("_tied_weights_keys as a {target: source} mapping")
    elif "norsparse patch: was" in source:
        report.already.append("_tied_weights_keys as a {target: source} mapping")
    # 3. non-persistent buffers recomputed on load
    if COMPAT_MARKER in source:
        report.already.append("non-persistent buffers recomputed on load")
    else:
        buffer_classes = _non_persistent_buffer_classes(classes)
        if buffer_classes:
            source += _SHIM.format(marker=COMPAT_MARKER, base=_pretrained_base(classes), buffer_classes=", ".join(buffer_classes))
            report.applied.append(f"non-persistent buffers recomputed on load ({', '.join(buffer_classes)})")
    return source


def patch_modeling_file(path: Path, class_name: str, checkpoint_keys: set[str], remove_cap: bool) -> CodePatch:
    """Patch ``path`` in place; return what was found and done."""
    source = path.read_text(encoding="utf-8")
    report = CodePatch(file=path.name, mlm_class=class_name)
    caps = find_soft_caps(source, class_name)
    if caps:
        if remove_cap:
            source, report.cap_lines = remove_soft_caps(source, class_name)
            report.soft_cap = "removed"
        else:
            report.soft_cap = "kept"
            report.cap_lines = [ast.unparse(c) for c in caps]
    elif CAP_MARKER in source:
        report.soft_cap = "already removed"
    source = apply_compat(source, checkpoint_keys, report)
    compile(source, str(path), "exec")  # never write a file that does not parse
    path.write_text(source, encoding="utf-8")
    if report.tied_weights:
        _enable_tying(path.parent / "config.json", report)
    return report


def _enable_tying(config_path: Path, report: CodePatch) -> None:
    """transformers 4 tied by default; transformers 5 ties only when the config says so."""
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if config.get("tie_word_embeddings") is True:
        return
    config["tie_word_embeddings"] = True
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    report.applied.append("tie_word_embeddings: true in config.json (the checkpoint has no separate head weight)")
