"""Where a compiled function's arrays live and how its kernels run: the array backends.

Every backend is an object (a `Backend`): `gc.backends.NumPy()`, `gc.backends.Dask(compute=...)`
or `gc.backends.CuPy(to_numpy=...)`. It owns its options, how arrays enter (`to_backend`) and
leave (`from_backend`, `persist`), and which kernel each line calls (`kernel`); the rest of
graphcomp asks it rather than its name. `gc.function(..., backend=...)` takes an object or a
name with its keywords (`backend="dask", compute=True` is `backend=gc.backends.Dask(compute=True)`):

* "numpy" (the default): arrays in this process. The executor plans memory (in-place writes,
  buffer reuse) and fused kernels run as NumPy code or numexpr programs (graphcomp.kernels).
* "dask": the same records' kernels build a Dask graph instead of computing. Placeholders
  take `dask.array` inputs chunked along any axis (NumPy arrays join the graph as they are);
  outputs are Dask arrays sharing one graph, or NumPy arrays computed in one pass with
  `compute=True` (on the default scheduler: the local threads, or a `dask.distributed`
  Client). An elementwise node, fused or not, is one blockwise task per chunk running its
  NumPy kernel, so its values are those of the NumPy backend, bit for bit; reductions,
  `matmul` and the gradient's contractions over the batch axis are Dask's own (tree
  reductions). Dask owns memory, so there is no memory plan. Building the graph never
  computes: a kernel that would compute a Dask array while the graph is built (by turning it
  into a NumPy array) raises instead, naming the op. One exception: a loop whose results' sizes
  are unknown when the graph is built (a batch of None rows, xs of unknown length) packs them
  after a header of sizes read from the data (graphcomp/ops/packing.py), and Dask can slice
  or reshape an array only when its sizes are known. Such a loop node (WHOLE_ARRAYS_SIZED) is
  computed when the call builds the graph, on the scheduler the caller chose, and its packed
  results are brought into this process and joined back to the graph as a one-chunk Dask
  array of known shape; the loop_part nodes reading them back (and any loop reading only such
  values) then run at once on those NumPy values, at no further cost. That is one
  synchronisation per such loop: the call waits for the loop and the work before it, and
  work before it that other results also read is done again when they are computed. The
  results stay Dask arrays of known shape; a failure in such a loop is raised by the call.
* "cupy": arrays on an NVIDIA GPU. Inputs are CuPy arrays or NumPy arrays (copied to the
  device once per call); outputs are CuPy arrays, or NumPy arrays with `to_numpy=True`.
  Kernels run through CuPy's NumPy-named functions (cuBLAS for matmul); a fused group is one
  `cupy.fuse` kernel running its members' ufunc steps, the same CuPy ufuncs the unfused ops
  call, so fusing changes no value there either. Variables live on the device between calls
  and their updates run there; reading `v.value` copies the current value back.

A record runs on every backend through the NumPy names its kernel calls, which Dask and CuPy
arrays take over (NumPy's `__array_function__` and `__array_ufunc__` protocols). Where that
does not hold, the record says so in `backend_impls` (graphcomp.registry.OpDef): its kernel for
that backend, WHOLE_ARRAYS (on Dask: one task on whole arrays, for ops with no blockwise form),
WHOLE_ARRAYS_SIZED (as WHOLE_ARRAYS, and a result whose sizes depend on values is computed
as the graph is built: see above), BLOCKWISE (on Dask: one task per chunk, as for elementwise
ops), or None when the op cannot run there. A kernel that fails inside a Dask task (a
run-time check of values, say) fails when the graph is computed, with the ExecutionError
naming the op and the user's line that a failing call raises.
"""

from __future__ import annotations

import contextvars
import functools
import sys

import numpy as np

from graphcomp.errors import ExecutionError
from graphcomp.kernels import Engine, choose, threads_here
from graphcomp.registry import BLOCKWISE, WHOLE_ARRAYS, WHOLE_ARRAYS_SIZED
from graphcomp.shapes import format_shape

class Backend:
    """Where a compiled function's arrays live: the interface every backend implements. The
    NumPy backend's methods are the identities; Dask and CuPy override what differs."""

    name = "numpy"
    keywords = ()        # gc.function's keywords this backend takes (`compute=`, `to_numpy=`)
    plans_memory = True  # the executor may write into given arrays (`out=`) and reuse buffers
    host_arrays = True   # arguments and results are NumPy arrays in this process, taken as they are
    kernel_engine = None  # the engine fused kernels run on (graphcomp.kernels.engines); None: NumPy's

    def owns(self, value):
        """True when `value` is one of this backend's own arrays (checked without converting)."""
        return False

    def to_backend(self, array, node):
        """A checked NumPy argument for placeholder `node`, as the generated code gets it."""
        return array

    def from_backend(self, results):
        """The results as the caller gets them (outputs first, then new variable values)."""
        return list(results)

    def kernel(self, node, kernel):
        """The callable a generated line calls for `node`, given the record's NumPy kernel."""
        if node.op.members:
            return choose(kernel, backend=self).prepare(node, kernel)
        return kernel

    def storage(self, storage):
        """What the generated code reads a variable's `.value` from."""
        return storage

    def constant(self, array):
        """A constant's array as the generated code holds it (once, when compiling)."""
        return array

    def run(self, run, arrays):
        """Run the generated program on the arguments (`running()` is this backend meanwhile)."""
        token = _RUNNING.set(self)
        try:
            return run(*arrays)
        finally:
            _RUNNING.reset(token)

    def store(self, storage, value):
        """Make `value` (a result of `from_backend`) the variable's new value."""
        storage.value = value

    def persist(self, results, fetch):
        """`results` kept where they live for reuse by later calls, the first `fetch` of them
        as host arrays (how gc.linearize keeps a point's values between products)."""
        return list(results)

    def returning_host_arrays(self):
        """This backend with results that come back as NumPy arrays."""
        return self

    def is_host_array(self, value):
        return isinstance(value, np.ndarray) or np.isscalar(value)

    def options(self):
        """gc.function's keywords that choose this backend again ({} for NumPy)."""
        return {}

    def __repr__(self):
        options = ", ".join(f"{key}={value!r}" for key, value in self.options().items() if key != "backend")
        return f"<backend {self.name}{' ' + options if options else ''}>"


class NumPy(Backend):
    """NumPy arrays in this process (the default): memory planned, kernels run as generated
    NumPy code or numexpr programs (graphcomp.kernels)."""


_DEFAULT = NumPy()


def unsupported(node, backend):
    """The error for a node whose record says it cannot run on `backend`."""
    where = f" (built at {node.source})" if node.source is not None else ""
    return NotImplementedError(f"op {node.op.name!r}{where} has no kernel for the {backend} backend; "
                               "compile this function with backend='numpy'")


def _record_kernel(node, backend):
    """The record's own kernel for `backend` with the node's attributes bound, WHOLE_ARRAYS or
    BLOCKWISE, None when the NumPy kernel serves, or NotImplementedError when the record says
    the op cannot run there."""
    impls = node.op.backend_impls
    if backend not in impls:
        return None
    impl = impls[backend]
    if impl is None:
        raise unsupported(node, backend)
    if impl in (WHOLE_ARRAYS, WHOLE_ARRAYS_SIZED, BLOCKWISE):
        return impl
    if node.op.stateful:  # a new state for each compiled function, as OpDef.kernel makes
        return impl(**node.attrs)
    return functools.partial(impl, **node.attrs) if node.attrs else impl


def _is_elementwise(op):
    """An elementwise record, or a fused kernel (which stands for elementwise members)."""
    return op.kind == "elementwise" or bool(op.members)


# Dask ------------------------------------------------------------------------------------------------

def is_dask_array(value):
    """True for a `dask.array.Array` (without importing Dask: none exists unless it is loaded)."""
    module = sys.modules.get("dask.array")
    return module is not None and isinstance(value, module.Array)


def _import_dask():
    try:
        import dask  # noqa: PLC0415 - optional
        import dask.array as da  # noqa: PLC0415
    except ImportError:
        raise ImportError("backend='dask' needs Dask: pip install \"graphcomp[dask]\"") from None
    return dask, da


class ImplicitComputeError(RuntimeError):
    """A kernel turned a Dask array into a NumPy array while the graph was being built."""


def _refuse_compute(*args, **kwargs):
    raise ImplicitComputeError("a kernel turned a Dask array into a NumPy array while building the graph; "
                               "its record needs a Dask kernel (backend_impls)")


class _Building:
    """One Dask call building its graph: the scheduler in effect where it began (None: Dask's
    default), which the one kind of kernel that computes meanwhile (WHOLE_ARRAYS_SIZED) uses,
    and the values such kernels computed, by the name of the Dask array standing for each."""

    __slots__ = ("scheduler", "computed")

    def __init__(self, scheduler):
        self.scheduler, self.computed = scheduler, {}


_BUILDING = contextvars.ContextVar("graphcomp_dask_building", default=None)


def _building():
    """The Dask call building its graph in this context (outside one: Dask's default scheduler)."""
    building = _BUILDING.get()
    return _Building(None) if building is None else building


class Dask(Backend):
    """Dask arrays: building the graph is lazy; `compute=True` computes all results at once."""

    name = "dask"
    keywords = ("compute",)
    plans_memory = False
    host_arrays = False

    def __init__(self, compute=False):
        self.dask, self.da = _import_dask()
        self.compute = compute
        self.kernel_engine = DaskBlockwise(self)

    def options(self):
        return {"backend": self.name, "compute": self.compute}

    def owns(self, value):
        return isinstance(value, self.da.Array)

    def kernel(self, node, kernel):
        own = _record_kernel(node, "dask")
        if own in (WHOLE_ARRAYS, WHOLE_ARRAYS_SIZED):
            return self._whole_arrays(node, kernel, sized=own == WHOLE_ARRAYS_SIZED)
        if node.op.members:
            return choose(kernel, backend=self).prepare(node, kernel)
        if own == BLOCKWISE or (own is None and _is_elementwise(node.op)):
            return self._blockwise(node, kernel)
        if own is not None:
            return own
        return kernel

    def _whole_arrays(self, node, kernel, sized=False):
        """One task running the NumPy kernel on the operands, each gathered into one array;
        `sized`: a result whose sizes depend on values is computed now, to know them."""
        dask, da, op, attrs = self.dask, self.da, node.op, dict(node.attrs)
        in_task = _naming_failures(node, kernel)

        def whole(*operands):
            if sized:  # operands computed by such kernels before: their values, at no cost
                operands = _computed_values(da, operands)
                if not any(isinstance(x, da.Array) for x in operands):
                    return self._joined(in_task(*operands))
            if not any(isinstance(x, da.Array) for x in operands):
                return kernel(*operands)
            # Dask arrays know their shapes, so the record's shape rule checks them here; a size
            # that depends on values (x[mask]) is unknown until computed: NaN, as Dask writes it.
            shape, dtype = op.infer(*(_as_described(x) for x in operands), **attrs)
            unknown = None in shape
            shape = tuple(np.nan if d is None else d for d in shape)
            result = da.from_delayed(dask.delayed(in_task, pure=True)(*operands), shape=shape, dtype=dtype)
            return self._sized(result) if sized and unknown else result
        whole.__name__ = op.name
        return whole

    def _blockwise(self, node, kernel, on_chunk=None):
        """One task per chunk running the NumPy kernel (or `on_chunk(*blocks)`, a fused
        kernel's engine on one chunk)."""
        elemwise, da, tokenize = _dask_elemwise(), self.da, self.dask.base.tokenize
        dtype = node.dtype

        if on_chunk is None:
            def on_chunk(*blocks):
                return np.asarray(kernel(*blocks), dtype=dtype)
        in_task = _naming_failures(node, on_chunk)

        def blockwise(*operands):
            if not any(isinstance(x, da.Array) for x in operands):
                return on_chunk(*operands)  # constants and variables only: computed here, as NumPy does
            # NumPy operands join as one-chunk Dask arrays, rechunked to match the others.
            operands = [_as_dask(da, x) if isinstance(x, np.ndarray) and x.ndim else x for x in operands]
            # Keys named after the op and unique to these operands: a later call on other data
            # must never meet keys of this one still held by a cluster (persisted values).
            name = f"{node.op.name}-{tokenize(id(node), *operands)}"
            return elemwise(in_task, *operands, dtype=dtype, name=name)
        blockwise.__name__ = getattr(kernel, "__name__", node.op.name)
        return blockwise

    def _sized(self, array):
        """`array` (one chunk whose sizes Dask knows only when computing) computed now, on the
        scheduler the caller chose: a synchronisation, the value brought into this process."""
        with self.dask.config.set(scheduler=_building().scheduler):
            (value,) = self.dask.compute(array)
        return self._joined(value)

    def _joined(self, value):
        """A value computed while building the graph, as a one-chunk Dask array of known shape
        in it (of a name of its own: no later call meets it), remembered for this call."""
        array = self.da.from_array(value, chunks=-1, name=False)
        _building().computed[array.name] = value
        return array

    def run(self, run, arrays):
        token = _BUILDING.set(_Building(self.dask.config.get("scheduler", None)))
        try:
            with self.dask.config.set(scheduler=_refuse_compute):  # building the graph computes nothing
                return run(*arrays)
        finally:
            _BUILDING.reset(token)

    def from_backend(self, results):
        if not self.compute:
            return list(results)
        lazy = [i for i, value in enumerate(results) if isinstance(value, self.da.Array)]
        computed = self.dask.compute(*(results[i] for i in lazy))
        results = list(results)
        for i, value in zip(lazy, computed):
            results[i] = value
        return results

    def persist(self, results, fetch):
        # One submission of one graph computes every result; they then stay in the workers'
        # memory, and the first `fetch` are brought back.
        results = list(self.dask.persist(*results))
        results[:fetch] = self.dask.compute(*results[:fetch])
        return results

    def returning_host_arrays(self):
        return self if self.compute else Dask(compute=True)

    def store(self, storage, value):
        if isinstance(value, self.da.Array):  # an update is a value, not a graph
            value = value.compute()
        storage.value = np.asarray(value)

    def is_host_array(self, value):
        return not isinstance(value, self.da.Array) and super().is_host_array(value)


class _Described:
    """An array as a record's shape rule sees it, with the sizes Dask knows only when computing
    (NaN) as None: unknown, as when the graph was built."""

    __slots__ = ("shape", "dtype", "ndim")

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype, self.ndim = dtype, len(self.shape)


def _as_described(x):
    """`x`, or a _Described of it when Dask knows some of its sizes only when computing."""
    shape = getattr(x, "shape", ())
    if not any(d != d for d in shape):  # all sizes known (NaN is the one size unequal to itself)
        return x
    return _Described((None if d != d else d for d in shape), x.dtype)


def _computed_values(da, operands):
    """`operands`, those computed while building this call's graph as their NumPy values."""
    computed = _building().computed
    return [computed.get(x.name, x) if isinstance(x, da.Array) else x for x in operands]


def _naming_failures(node, kernel):
    """`kernel` as a Dask task runs it. A failure in a task comes when the graph is computed,
    after the call that built it has returned, so it is raised there as the ExecutionError a
    failing call raises: naming the op, its inputs' shapes and the user's line."""
    label, lines = node.op.failure_context(node)
    return functools.partial(_run_task, kernel, label, "".join(f"\n  {line}" for line in lines))


def _run_task(kernel, label, where, *blocks):
    try:
        return kernel(*blocks)
    except Exception as error:
        shapes = ", ".join(format_shape(np.shape(block)) for block in blocks)
        raise ExecutionError(f"{label} failed on inputs of shapes [{shapes}]: "
                             f"{type(error).__name__}: {error}{where}") from error


class DaskBlockwise(Engine):
    """A fused kernel on Dask arrays: one task per chunk, each running the kernel on its blocks
    with the NumPy engine `choose` picks for the block's size, on the task's own thread (Dask
    runs the chunks in parallel), so its values are the NumPy backend's, bit for bit."""

    name = "dask-blockwise"

    def __init__(self, backend):
        self.backend = backend

    def prepare(self, node, kernel):
        # The task holds the kernel alone (a worker process gets it, not this backend).
        return self.backend._blockwise(node, kernel, functools.partial(_run_on_chunk, kernel))

    def run(self, kernel, inputs, out=None, given=False):
        """The kernel on one chunk's blocks (NumPy arrays), into `out` or a new array of the
        chunk's shape (the kernel's static shape is the whole array's)."""
        if out is None:
            return _run_on_chunk(kernel, *inputs)
        with threads_here(1):
            return choose(kernel, out.size).run(kernel, inputs, out, given)


def _run_on_chunk(kernel, *blocks):
    """A fused kernel on one chunk's blocks, into a new array of the chunk's shape, on this thread."""
    out = np.empty(np.broadcast_shapes(*(np.shape(b) for b in blocks)), kernel.dtype)
    with threads_here(1):
        return choose(kernel, out.size).run(kernel, blocks, out, False)


def _as_dask(da, array):
    """A NumPy array as a Dask array. A broadcast view (a constant spread over the batch by a
    gradient) stays one: its stored values go into the graph, not its full size."""
    if array.size > 1 and 0 in array.strides:
        stored = array[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in array.strides)]
        return da.broadcast_to(da.asarray(np.ascontiguousarray(stored)), array.shape)
    return da.asarray(array)


@functools.lru_cache(maxsize=None)
def _dask_elemwise():
    from dask.array.core import elemwise  # noqa: PLC0415 - the blockwise map Dask's ufuncs use

    return elemwise


# CuPy ------------------------------------------------------------------------------------------------

def _import_cupy():
    try:
        import cupy  # noqa: PLC0415 - optional
    except ImportError:
        raise ImportError("backend='cupy' needs CuPy and an NVIDIA GPU: pip install cupy-cuda12x "
                          "(the build matching your CUDA)") from None
    return cupy


def cupy_emit(xp):
    """The step interpreter on arrays of the namespace `xp` (CuPy's ufuncs, `where`, casts)."""
    def emit(function, *operands, dtype=None):
        if function == "where":
            return xp.where(*operands)
        if function == "cast":
            return operands[0].astype(dtype)
        return getattr(xp, function)(*operands)
    return emit


class CuPy(Backend):
    """CuPy arrays on the GPU. `xp` is the array namespace (cupy; tests of the plumbing may
    pass another one with CuPy's names)."""

    name = "cupy"
    keywords = ("to_numpy",)
    plans_memory = False
    host_arrays = False

    def __init__(self, to_numpy=False, xp=None):
        self.xp = xp if xp is not None else _import_cupy()
        self.to_numpy = to_numpy
        self._emit = cupy_emit(self.xp)
        self.kernel_engine = CupyFuse(self.xp)

    def options(self):
        return {"backend": self.name, "to_numpy": self.to_numpy}

    def owns(self, value):
        return isinstance(value, self.xp.ndarray) and self.xp.ndarray is not np.ndarray

    def to_backend(self, array, node):
        return self.xp.asarray(array)

    def kernel(self, node, kernel):
        own = _record_kernel(node, "cupy")
        if own in (WHOLE_ARRAYS, WHOLE_ARRAYS_SIZED, BLOCKWISE):
            own = None  # one CuPy array is already whole
        if own is not None:
            return own
        op = node.op
        if op.members:
            return choose(kernel, backend=self).prepare(node, kernel)
        if op.steps is not None:  # an elementwise record: its ufunc steps on CuPy's ufuncs
            steps, attrs, emit = op.steps, dict(node.attrs), self._emit

            def elementwise(*arrays):
                return steps(emit, *arrays, **attrs)
            elementwise.__name__ = op.name
            return elementwise
        xp = self.xp

        def on_device(*arrays):
            result = kernel(*arrays)
            # A kernel that builds its result from shapes alone (zeros, random draws) makes
            # it in host memory: it moves to the device here.
            return xp.asarray(result) if isinstance(result, np.ndarray) else result
        on_device.__name__ = getattr(kernel, "__name__", op.name)
        return on_device

    def constant(self, array):
        return self.xp.asarray(array)

    def storage(self, storage):
        return _DeviceStorage(storage, self.xp)

    def returning_host_arrays(self):
        return self if self.to_numpy else CuPy(to_numpy=True, xp=self.xp)

    def from_backend(self, results):
        if not self.to_numpy:
            return [self.xp.asarray(value) for value in results]
        return [value.get() if hasattr(value, "get") else np.asarray(value) for value in results]

    def store(self, storage, value):
        storage.set_device_value(self.xp.asarray(value), self.xp)

    def is_host_array(self, value):
        return not self.owns(value) and super().is_host_array(value)


class CupyFuse(Engine):
    """A fused kernel on CuPy arrays: one `cupy.fuse` kernel running the members' steps in
    order, the ufuncs the unfused ops call, compiled into one elementwise kernel."""

    name = "cupy-fuse"

    def __init__(self, xp):
        self.xp = xp
        self._emit = cupy_emit(xp)

    def prepare(self, node, kernel):
        program = kernel.program
        names = [f"x{i}" for i in range(program.arity)]
        namespace = {"replay": program.replay, "emit": self._emit}
        # cupy.fuse traces a function of named parameters, one per operand.
        exec(f"def fused({', '.join(names)}):\n    return replay(emit, ({', '.join(names)},))\n",  # noqa: S102
             namespace)
        fuse = getattr(self.xp, "fuse", None)
        return fuse(namespace["fused"]) if fuse is not None else namespace["fused"]

    def run(self, kernel, inputs, out=None, given=False):
        """The kernel on device arrays (compiled for this call), into `out` when given."""
        result = self.prepare(None, kernel)(*inputs)
        if out is None:
            return result
        out[...] = result
        return out


class _DeviceStorage:
    """A variable's value on the device, copied there once and kept while the host value is
    unchanged."""

    __slots__ = ("storage", "xp")

    def __init__(self, storage, xp):
        self.storage, self.xp = storage, xp

    @property
    def value(self):
        return self.storage.device_value(self.xp)


# choosing -------------------------------------------------------------------------------------------

BY_NAME = {"numpy": NumPy, "dask": Dask, "cupy": CuPy}
BACKEND_NAMES = tuple(BY_NAME)
DaskBackend, CupyBackend = Dask, CuPy  # the names these classes had before


def option_keywords():
    """Every keyword of gc.function that a backend takes (`compute`, `to_numpy`)."""
    return tuple(dict.fromkeys(key for backend in BY_NAME.values() for key in backend.keywords))


def resolve(backend=None, **options):
    """The Backend object for gc.function's `backend=` (a Backend, or a name with its keywords
    set to true; None: NumPy)."""
    given = {key: value for key, value in options.items() if value}
    if isinstance(backend, Backend):
        if given:
            raise ValueError(f"function: give {', '.join(given)} to the backend object, not to gc.function")
        return backend
    if backend is None:
        backend = "numpy"
    if not isinstance(backend, str) or backend not in BY_NAME:
        raise ValueError(f"function: backend must be one of {BACKEND_NAMES} or a gc.backends.Backend, "
                         f"got {backend!r}")
    chosen = BY_NAME[backend]
    for key in given:
        if key not in chosen.keywords:
            owner = next((name for name, cls in BY_NAME.items() if key in cls.keywords), None)
            raise ValueError(f"function: {key}=True is for backend={owner!r}" if owner
                             else f"function: unknown backend keyword {key!r}")
    return chosen(**given) if given or chosen is not NumPy else _DEFAULT


_RUNNING = contextvars.ContextVar("graphcomp_running_backend", default=None)


def running():
    """The backend whose program this thread is running (through `Backend.run`), NumPy outside
    one: the backend a loop's kernel runs its body graph on, on the arrays it was given."""
    backend = _RUNNING.get()
    return _DEFAULT if backend is None else backend


def for_arrays(values):
    """The backend whose arrays `values` are: Dask when any is a Dask array, else NumPy."""
    return Dask() if any(is_dask_array(value) for value in values) else _DEFAULT
