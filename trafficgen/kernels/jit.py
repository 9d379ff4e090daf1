"""The one decorator policy of the kernels.

``kernel``
    Anything called from Python (small functions too, e.g. ``rng.derive``): compiled once per
    signature, cached on disk, and run without the GIL (the engine's worker threads run
    kernels side by side).
``helper``
    A function called only from other kernels, compiled once per signature as a function of
    its own, without the Python entry point numba would build for it (a third of a small
    function's compile time).
``inline``
    A small function called only from other kernels (byte stores, the checksum loop, a TCP
    event: what the hot loops are made of): a helper that LLVM inlines into its callers. Not
    numba's ``inline="always"``, which copies the body into every call site before typing and
    multiplies compile time, not speed. It *borrows* the arrays it is handed: compiled without
    numba's reference counts (:func:`inline`), so it may not make an array or return one.

A helper or inline function has no Python entry point: called from Python it would crash the
interpreter (``tests/test_startup.py`` checks that nothing outside the kernels refers to one).
Every jitted function of ``trafficgen.kernels`` uses one of these three. Calls between them
are typed with plain types (:func:`plain_calls`), so each compiles once per signature.
Compiled code is cached where ``trafficgen.kernels.cache_dir`` decided, or not at all.
"""
import hashlib
import os

from . import cache_dir

_CACHE = cache_dir() is not None  # decided before numba is imported (its cache folder)
# numba wraps sys.stdout and stderr in colorama for every typing error it builds (thousands per
# compile, each a failed overload candidate) unless told not to; its messages are uncoloured
# by default anyway
os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")
# LLVM at -O1 unless the user says otherwise: a first run's compile takes 18% less CPU (chat's
# plan: 20.3 -> 16.5 s; cold 11.0 -> 9.0 s wall on two cores) while generation runs as fast as
# at -O3 (bench/bench_generate.py, 2 minutes of chat, interleaved: 1.58/1.46 M packets/s at
# -O3, 1.49/1.62 at -O1): the hot loops are byte copies and integer sums LLVM's -O1 already
# keeps tight, and the kernels' helpers are inlined by their own attribute (``inline``)
os.environ.setdefault("NUMBA_OPT", "1")

from numba import njit  # noqa: E402
from numba.core import cpu, targetconfig, types  # noqa: E402


def _quicker_flag_values() -> None:
    """numba compares and hashes its compiler flags (``TargetConfig.values()``: a dict of some
    40 options, each read through a property) every time it looks up an overload's typing
    cache: about a tenth of the CPU time of compiling the kernels (chat's: 14.8 -> 13 s). The
    same dict, from one merge of the class's defaults and the options set; installed only if
    it gives what numba's own does (``tests/test_startup.py`` compares them too)."""
    cls = targetconfig.TargetConfig
    original = cls.values
    defaults: dict = {}

    def values(self):
        d = defaults.get(type(self))
        if d is None:
            d = defaults[type(self)] = {k: o.default for k, o in type(self).options.items()}
        return {**d, **self._values}

    try:
        from numba.core.compiler import Flags
        probe = Flags()
        probe.nrt = True
        if values(probe) != original(probe) or values(Flags()) != original(Flags()):
            return
    except Exception:  # noqa: BLE001 - another numba: leave it as it is
        return
    cls.values = values


_quicker_flag_values()


def _one_stamp_for_all_kernels() -> None:
    """numba checks a cached function against its own source file only, but a kernel holds
    the inline functions of other files compiled into it: edit ``tcpseg.py`` and ``tcp.py``'s
    cached simulation would still run the old ``tcpseg.emit`` (a checkout updated in place
    then writes stale bytes). Here a function of this folder is stamped with the digest of all
    its files, so any change to one compiles them all again. Read once a process (under a
    millisecond); other functions keep numba's own stamp."""
    try:
        from numba.core import caching
        mixin = caching._SourceFileBackedLocatorMixin
        original = mixin.get_source_stamp
    except (ImportError, AttributeError):  # another numba: its own stamps
        return
    here = os.path.dirname(os.path.abspath(__file__))
    digest: list = []

    def get_source_stamp(self):
        path = getattr(self, "_py_file", None)
        if path is None or os.path.dirname(os.path.abspath(path)) != here:
            return original(self)
        if not digest:
            h = hashlib.sha256()
            for name in sorted(f for f in os.listdir(here) if f.endswith(".py")):
                with open(os.path.join(here, name), "rb") as f:
                    h.update(name.encode() + b"\0" + f.read())
            digest.append(h.digest())
        return digest[0]

    mixin.get_source_stamp = get_source_stamp


_one_stamp_for_all_kernels()

_hook: list = []  # [the compile hook] while one is set


def set_compile_hook(hook):
    """Call ``hook(dispatcher, sig, compile)`` instead of ``compile(sig)`` whenever a kernel,
    helper or inline function is asked for a signature (from Python, or while another
    compiles); None removes it. Returns the hook it replaces. ``trafficgen.engine.compile``
    records and shares out compiles through it."""
    previous = _hook[0] if _hook else None
    _hook[:] = [hook] if hook is not None else []
    return previous


def plain_calls(dispatcher):
    """``dispatcher``, typed with plain types when another kernel calls it.

    numba types a constant argument as its literal (``Literal[int](0)``), and a variable whose
    type is inferred in steps (``cur = 0`` then ``cur += n``) first as the literal of its first
    value: each is a signature of its own, so a helper (and every helper it calls) would
    compile once per literal. Called from a kernel, it is compiled for the plain types
    (``int64``, ``UniTuple(int64 x 5)``) and the call site converts. Its compiles go through
    the compile hook, if one is set.
    """
    typed = dispatcher.get_call_template

    def get_call_template(args, kws):
        return typed(tuple(types.unliteral(a) for a in args),
                     {k: types.unliteral(v) for k, v in kws.items()})

    dispatcher.get_call_template = get_call_template
    compile_ = dispatcher.compile

    def compile(sig):
        return _hook[0](dispatcher, sig, compile_) if _hook else compile_(sig)

    dispatcher.compile = compile
    return dispatcher


# numba's (private) option for reference counts, said by every decorator: a function that
# does not say inherits the setting of the compile it is first typed in, and an inline
# caller's is off. A numba without it counts everywhere: slower, the same results.
_COUNTED, _BORROWING = ({"_nrt": True}, {"_nrt": False}) \
    if hasattr(cpu.CPUTargetOptions, "_nrt") else ({}, {})


def kernel(fn):
    return plain_calls(njit(cache=_CACHE, nogil=True, no_cfunc_wrapper=True, **_COUNTED)(fn))


def helper(fn):
    return plain_calls(njit(cache=_CACHE, no_cpython_wrapper=True, no_cfunc_wrapper=True,
                            **_COUNTED)(fn))


def inline(fn):
    """Compiled without numba's reference counts (``_nrt=False``). With them, every call
    increfs and decrefs each array it is handed (an atomic add each), and where the body
    branches or loops LLVM cannot remove the pairs once it has inlined it: 45% of the TCP
    simulation's time went to them (an event loop of such calls). The caller holds the arrays
    for the call, so the function may borrow them; numba refuses to make one without counts,
    and :func:`borrows_only` refuses the rest (returning an array, or taking one from a call)."""
    return borrows_only(plain_calls(njit(cache=_CACHE, no_cpython_wrapper=True,
                                         no_cfunc_wrapper=True, forceinline=True, **_BORROWING)(fn)))


def borrows_only(dispatcher):
    """Check each compile of ``dispatcher`` (built without reference counts): it returns no
    reference-counted value (the caller would release what was never taken) and calls no
    function that returns one (nobody would release it). A ``TypeError`` names the culprit."""
    compile_ = dispatcher.compile

    def compile(sig):
        before = set(dispatcher.overloads)
        entry = compile_(sig)
        for key, cres in list(dispatcher.overloads.items()):
            if key not in before:  # each overload checked once, when it is made or loaded
                _check_borrows(dispatcher, cres)
        return entry

    dispatcher.compile = compile
    return dispatcher


def _check_borrows(dispatcher, cres) -> None:
    models = dispatcher.targetctx.data_model_manager
    name = dispatcher.py_func.__qualname__
    if models[cres.signature.return_type].contains_nrt_meminfo():
        raise TypeError(f"inline function {name} returns {cres.signature.return_type}: it may "
                        "only borrow arrays (return an index, or make it a helper)")
    annotation = getattr(cres, "type_annotation", None)  # its name only, when from the cache
    if not hasattr(annotation, "calltypes"):
        return
    for expr, sig in annotation.calltypes.items():
        if getattr(expr, "op", None) == "call" and sig is not None and \
                isinstance(annotation.typemap.get(expr.func.name), types.Dispatcher) and \
                models[sig.return_type].contains_nrt_meminfo():
            raise TypeError(f"inline function {name} takes {sig.return_type} from a call (line "
                            f"{expr.loc.line}): nothing would release it (make it a helper)")


def ir_inline(fn):
    """Inlined into its caller by numba itself (in its IR, before reference counting), not by
    LLVM as ``inline`` is: the arrays it is handed then cost no ``NRT_incref``/``NRT_decref``
    per call, which LLVM cannot remove across branches (the frame encoder's payload, once a
    data packet: 9% of ``encode_tcp``). Never compiled on its own, so neither cached nor
    recorded: its callers' compiles include it."""
    return njit(inline="always", no_cpython_wrapper=True, no_cfunc_wrapper=True)(fn)
