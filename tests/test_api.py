"""Keep the public surface honest: exports, docs, the exception tree."""

from __future__ import annotations

import inspect

import wsmux
import wsmux.compat
import wsmux.testing


def test_all_is_sorted_and_complete() -> None:
    assert wsmux.__all__ == sorted(wsmux.__all__)
    assert len(set(wsmux.__all__)) == len(wsmux.__all__)
    for name in wsmux.__all__:
        assert hasattr(wsmux, name), name
    public = {
        name
        for name, value in vars(wsmux).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("wsmux")
    }
    assert public <= set(wsmux.__all__), public - set(wsmux.__all__)


def test_public_names_are_documented() -> None:
    for module in (wsmux, wsmux.compat, wsmux.testing):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert inspect.getdoc(obj), f"{module.__name__}.{name} has no docstring"
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not callable(member):
                        continue
                    assert inspect.getdoc(member), f"{name}.{attr} has no docstring"


def test_one_exception_base() -> None:
    errors = [getattr(wsmux, n) for n in wsmux.__all__ if n.endswith(("Error", "Closed"))]
    errors += [wsmux.StreamLagged, wsmux.ConnectionGap, wsmux.NotConnected, wsmux.RequestTimeout]
    errors += [wsmux.RetriesExhausted]
    for exc in errors:
        if inspect.isclass(exc) and issubclass(exc, BaseException):
            assert issubclass(exc, wsmux.WsmuxError), exc
    assert issubclass(wsmux.FatalConnectError, wsmux.ConnectError)
    assert issubclass(wsmux.RetriesExhausted, wsmux.ConnectError)
