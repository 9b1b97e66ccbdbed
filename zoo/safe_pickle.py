"""Reading torch checkpoints written by any project, without running a line of their pickled code.

Official training scripts pickle much more than tensors beside the weights: numpy scalars and arrays, OmegaConf /
yacs / argparse configurations, delu or Lightning helper objects, random states, project enums and even whole
``nn.Module`` objects (``torch.save(model)``). ``torch.load(weights_only=True)`` refuses all of these; a plain
``torch.load`` imports the project's modules and runs whatever the pickle asks. :func:`read_torch_file` does
neither:

- names on an allow-list (torch's own weights-only list: tensors, storages, dtypes, ``torch.Size``; plain
  containers, ``collections.OrderedDict`` / ``defaultdict`` / ``Counter`` / ``deque``, ``argparse.Namespace``,
  ``datetime`` values, paths, ``random.Random``; numpy arrays, scalars and dtypes under both the ``numpy.core``
  and ``numpy._core`` spellings) are rebuilt as themselves;
- any other name (a project class, a function, ``os.system``) becomes an inert :class:`PickledObject` stand-in
  that records the arguments it was called with and the state it was given, and runs nothing;
- the unpickler is the pure-Python one with its dangerous opcodes checked: only allow-listed callables and
  stand-ins are called (REDUCE, NEWOBJ, INST, OBJ), and state is never written onto a class, a function or an
  allow-listed object (BUILD), so a pickle cannot patch code that runs later.

So a pickled whole module comes back as stand-ins whose ``state`` holds its ``_parameters`` / ``_buffers`` /
``_modules`` dicts, and :func:`state_dict_of_pickled_module` walks them into a state dict; :func:`to_plain`
turns configurations (OmegaConf containers and nodes, yacs ``CfgNode``, ``Namespace``, enums) into plain Python.
"""

from __future__ import annotations

import _compat_pickle
import argparse
import builtins
import collections
import datetime
import decimal
import fractions
import functools
import io
import pathlib
import pickle
import random
import types
import uuid
import zipfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from zoo.errors import CheckpointError, UnsafeCheckpointError

__all__ = ["PickledObject", "UnreadablePickleError", "UnsafePickleError", "read_torch_file", "register_rebuild",
           "safe_unpickle", "state_dict_of_pickled_module", "to_plain"]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something that would change code or state outside the objects it builds."""


class UnreadablePickleError(pickle.UnpicklingError):
    """An allow-listed type could not be rebuilt from the arguments the pickle gave it."""


class PickledObject:
    """Inert stand-in for an object whose class (or function) is not on the allow-list.

    Nothing of the original class is imported or run. What the pickle gave is kept:

    Attributes:
        pickled_name: "module.qualname" of the class or function the pickle named (class attribute).
        args / kwargs: the arguments it was constructed or called with.
        state: what the pickle passed to ``__setstate__`` (for most classes the instance ``__dict__``; for a
            pickled ``nn.Module`` the dict holding ``_parameters``, ``_buffers`` and ``_modules``).
        dict_items / list_items: items of a dict or list subclass (yacs ``CfgNode``, Lightning ``AttributeDict``).
    """

    pickled_name: ClassVar[str] = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        obj.dict_items, obj.list_items = {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the arguments were kept by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.dict_items[key] = value

    def append(self, value: Any) -> None:
        self.list_items.append(value)

    def extend(self, values: Any) -> None:
        self.list_items.extend(values)

    def add(self, value: Any) -> None:
        self.list_items.append(value)

    @property
    def attributes(self) -> dict[str, Any]:
        """The pickled instance attributes (``state`` when it is a dict, else empty)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2 and all(part is None or isinstance(part, dict)
                                                                for part in state):
            return {**(state[0] or {}), **(state[1] or {})}  # (__dict__, __slots__ values)
        return state if isinstance(state, dict) else {}

    def __repr__(self) -> str:
        return f"<inert stand-in for {self.pickled_name}>"


@functools.cache
def stand_in_class(qualified_name: str) -> type[PickledObject]:
    """The (cached) stand-in class for ``qualified_name``; instances of one name share it."""
    return type(qualified_name.rpartition(".")[2] or "Unknown", (PickledObject,), {"pickled_name": qualified_name})


# --- the allow-list -----------------------------------------------------------------------------------------------
def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` for plain arrays only (a subclass would run its own ``__array_finalize__``)."""
    if subtype is not np.ndarray:
        raise UnreadablePickleError(f"numpy array subclass {getattr(subtype, 'pickled_name', subtype)!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _numpy_dtype(spec: Any, align: bool = False, copy: bool = False) -> np.dtype:
    """``numpy.dtype`` always as a copy, so that the BUILD that follows never sets the state of a shared builtin
    dtype (numpy's own pickles ask for a copy too)."""
    return np.dtype(spec, bool(align), True)


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 objects) for stand-ins and plain bases, nothing else."""
    if isinstance(cls, type) and issubclass(cls, PickledObject):
        obj = cls()
        if state is not None:
            obj.args = (state,)
        return obj
    if cls is base and base in (object, dict, list, set, tuple, int, float, str, bytes):
        return base() if state is None else base(state)
    raise UnsafePickleError(f"copyreg._reconstructor of {cls!r} on {base!r}")


def _builtins() -> dict[str, Any]:
    names = ("set", "frozenset", "bytearray", "bytes", "complex", "slice", "range", "int", "float", "str", "bool",
             "list", "dict", "tuple", "object")
    return {f"builtins.{n}": getattr(builtins, n) for n in names}


def _numpy_names() -> dict[str, Any]:
    core = getattr(np, "_core", None) or np.core
    out = {"numpy.ndarray": np.ndarray, "numpy.dtype": _numpy_dtype}
    for package in ("numpy.core", "numpy._core"):
        out[f"{package}.multiarray._reconstruct"] = _numpy_reconstruct
        out[f"{package}.multiarray.scalar"] = core.multiarray.scalar
        out[f"{package}.numeric._frombuffer"] = core.numeric._frombuffer
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 names the dtype classes (Float64DType, ...)
    if dtypes is not None:
        out.update({f"numpy.dtypes.{n}": getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")})
    return out


@functools.cache
def _allow_list() -> dict[str, Any]:
    from torch import _weights_only_unpickler

    allowed: dict[str, Any] = dict(_weights_only_unpickler._get_allowed_globals())  # tensors, storages, dtypes
    allowed.update(_builtins())
    allowed.update({
        "collections.OrderedDict": collections.OrderedDict, "collections.defaultdict": collections.defaultdict,
        "collections.Counter": collections.Counter, "collections.deque": collections.deque,
        "copyreg._reconstructor": _copyreg_reconstructor,
        "argparse.Namespace": argparse.Namespace,
        "random.Random": random.Random,
        "uuid.UUID": uuid.UUID, "decimal.Decimal": decimal.Decimal, "fractions.Fraction": fractions.Fraction,
        **{f"datetime.{n}": getattr(datetime, n) for n in ("datetime", "date", "time", "timedelta", "timezone")},
        **{f"{m}.{n}": path_type for m in ("pathlib", "pathlib._local") for n, path_type in (
            ("Path", pathlib.PurePath), ("PurePath", pathlib.PurePath), ("PosixPath", pathlib.PurePosixPath),
            ("PurePosixPath", pathlib.PurePosixPath), ("WindowsPath", pathlib.PureWindowsPath),
            ("PureWindowsPath", pathlib.PureWindowsPath))},  # pure paths: the names only, no file system access
    })
    allowed.update(_numpy_names())
    return allowed


_REBUILDS: dict[str, Any] = {}


def register_rebuild(qualified_name: str, rebuild: Any) -> None:
    """Rebuild ``qualified_name`` as ``rebuild`` (a class or function that only builds plain data) instead of an
    inert stand-in; for a family whose official files pickle a type the family wants back in a usable form."""
    _REBUILDS[qualified_name] = rebuild
    _allowed_ids.cache_clear()


@functools.cache
def _allowed_ids() -> frozenset[int]:
    return frozenset(id(v) for v in (*_allow_list().values(), *_REBUILDS.values()))


def _is_stand_in_class(obj: Any) -> bool:
    return isinstance(obj, type) and issubclass(obj, PickledObject)


def _name_of(obj: Any) -> str:
    if _is_stand_in_class(obj):
        return obj.pickled_name
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


# --- the unpickler --------------------------------------------------------------------------------------------------
class SafeUnpickler(pickle._Unpickler):
    """A pure-Python unpickler that rebuilds allow-listed names and stands in for every other one.

    Attributes:
        stand_ins: the names it stood in for, in the order met.
    """

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stand_ins: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # python 2 names (__builtin__.unicode, ...), as pickle does
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        qualified = f"{module}.{name}"
        if qualified in _REBUILDS:
            return _REBUILDS[qualified]
        if qualified in _allow_list():
            return _allow_list()[qualified]
        if qualified not in self.stand_ins:
            self.stand_ins.append(qualified)
        return stand_in_class(qualified)

    def _check_callable(self, func: Any, opcode: str) -> None:
        if not (_is_stand_in_class(func) or id(func) in _allowed_ids()):
            raise UnsafePickleError(f"{opcode} asks to call {_name_of(func)!r}, which is not on the allow-list")

    def _call(self, func: Any, args: Any, kwargs: Any, opcode: str) -> Any:
        self._check_callable(func, opcode)
        try:
            if opcode in ("NEWOBJ", "NEWOBJ_EX"):
                return func.__new__(func, *args, **kwargs)
            return func(*args, **kwargs)
        except (UnsafePickleError, UnreadablePickleError):
            raise
        except Exception as err:
            raise UnreadablePickleError(f"could not rebuild {_name_of(func)}: {type(err).__name__}: {err}") from err

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args, {}, "REDUCE")

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._call(cls, args, {}, "NEWOBJ"))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._call(cls, args, kwargs, "NEWOBJ_EX"))

    def _instantiate(self, klass: Any, args: list) -> None:  # INST and OBJ
        self.append(self._call(klass, args, {}, "INST"))

    def load_build(self) -> None:
        inst = self.stack[-2]  # below the state
        if isinstance(inst, type | types.FunctionType | types.BuiltinFunctionType | types.ModuleType) \
                or id(inst) in _allowed_ids():
            raise UnsafePickleError(f"BUILD asks to set the state of {_name_of(inst)!r} itself")
        try:
            super().load_build()
        except Exception as err:
            raise UnreadablePickleError(f"could not set the state of {_name_of(type(inst))}: {err}") from err

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build


def safe_unpickle(data: bytes) -> Any:
    """Unpickle plain (non-torch) ``data`` with :class:`SafeUnpickler`."""
    return SafeUnpickler(io.BytesIO(data)).load()


def _pickle_module(record: list[str]) -> types.ModuleType:
    """A module object for ``torch.load(pickle_module=...)``: torch subclasses its ``Unpickler`` (and calls its
    ``load`` for the legacy format), so every global of the file goes through :meth:`SafeUnpickler.find_class`."""

    class RecordingUnpickler(SafeUnpickler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.stand_ins = record

    module = types.ModuleType("zoo_safe_pickle")
    module.Unpickler = RecordingUnpickler
    module.load = lambda file, **kwargs: RecordingUnpickler(file, **kwargs).load()
    return module


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.rpartition("/")[2] == "constants.pkl" for name in archive.namelist())


def read_torch_file(path: str | Path) -> Any:
    """The object a torch checkpoint holds (tensors on the CPU), read without running any of its pickled code.

    Raises:
        CheckpointError: the file is not a torch checkpoint, or an allow-listed type could not be rebuilt (the
            message names the file and the class).
        UnsafeCheckpointError: the pickle asks to patch a class or function, or the file is a TorchScript
            archive (whose code would run).
    """
    path = Path(path)
    if _is_torchscript(path):
        raise UnsafeCheckpointError(f"{path}: a TorchScript archive, which carries code; zoo reads weights only. "
                                    "Save the scripted module's state_dict() and load that.")
    stand_ins: list[str] = []
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_pickle_module(stand_ins))
    except UnsafePickleError as err:
        raise UnsafeCheckpointError(f"{path}: refused to load: {err}; nothing from the file was run") from None
    except UnreadablePickleError as err:
        raise CheckpointError(f"{path}: cannot be read: {err}") from None
    except Exception as err:  # a damaged file breaks the unpickler or torch's reader in any number of ways
        last = f" (last class met: {stand_ins[-1]})" if stand_ins else ""
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable torch checkpoint{last}: {first_line}") from None


# --- what to do with stand-ins --------------------------------------------------------------------------------------
def state_dict_of_pickled_module(module: PickledObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a whole ``nn.Module`` pickled with ``torch.save(model)`` and read back as stand-ins:
    its ``_parameters`` and persistent ``_buffers``, then those of its ``_modules``, under dotted names.

    Raises:
        CheckpointError: ``module`` is not a pickled ``nn.Module`` (no ``_parameters`` / ``_modules`` state).
    """
    state = module.attributes if isinstance(module, PickledObject) else {}
    if "_parameters" not in state and "_modules" not in state:
        raise CheckpointError(f"{module!r} is not a pickled torch module (no _parameters or _modules in its state)")
    out: dict[str, torch.Tensor] = {}
    for name, parameter in (state.get("_parameters") or {}).items():
        if isinstance(parameter, torch.Tensor):
            out[prefix + name] = parameter.detach()
    skipped = state.get("_non_persistent_buffers_set") or set()
    for name, buffer in (state.get("_buffers") or {}).items():
        if isinstance(buffer, torch.Tensor) and name not in skipped:
            out[prefix + name] = buffer
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, PickledObject):
            out.update(state_dict_of_pickled_module(child, f"{prefix}{name}."))
    return out


def is_pickled_module(obj: Any) -> bool:
    """True for the stand-in of a pickled ``nn.Module``."""
    return isinstance(obj, PickledObject) and "_parameters" in obj.attributes and "_modules" in obj.attributes


def to_plain(obj: Any) -> Any:
    """Configurations as plain Python: dicts, lists, scalars (and tensors / arrays as they are).

    OmegaConf ``DictConfig`` / ``ListConfig`` become dicts / lists of their node values, enums their value,
    ``argparse.Namespace`` and other objects the dict of their attributes, dict and list subclasses (yacs
    ``CfgNode``, ``AttributeDict``) their items, numpy scalars Python numbers. OmegaConf interpolations stay as
    their ``"${...}"`` text and missing values as ``"???"``.
    """
    if isinstance(obj, dict):
        return {to_plain(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset | collections.deque):
        items = [to_plain(v) for v in obj]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, argparse.Namespace):
        return to_plain(vars(obj))
    if not isinstance(obj, PickledObject):
        return obj
    attributes = obj.attributes
    if "_content" in attributes:  # an OmegaConf container (its nodes hold the values)
        return to_plain(attributes["_content"])
    if "_val" in attributes:  # an OmegaConf value node
        return to_plain(attributes["_val"])
    if obj.dict_items or obj.list_items:
        return to_plain(obj.dict_items) if obj.dict_items else to_plain(obj.list_items)
    if attributes:
        return {k: to_plain(v) for k, v in attributes.items() if not (isinstance(k, str) and k.startswith("__"))}
    if len(obj.args) == 1 and not obj.kwargs:  # an enum member, or a one-argument value type
        return to_plain(obj.args[0])
    return obj
